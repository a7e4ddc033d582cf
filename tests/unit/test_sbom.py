"""The SBOM: package URLs for every source, CycloneDX validated against its 1.6 JSON schema
(cyclonedx-python-lib's validator), SPDX parsed back and validated by spdx-tools, and the
same inputs giving the same bytes."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envlock.model import ospkgs
from envlock.model.sbom import EPOCH, SbomInput, created_at, image_item, inventory, package_purl
from envlock.model.sbomdoc import render, serial_number
from tests.factories import make_lock, package

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ospkgs"
IMAGE = "127.0.0.1:5000/team/proj@sha256:" + "a" * 64
BASE = "python@sha256:" + "b" * 64


def zoo_lock(**overrides):
    packages = (
        package("editpkg", "0.3.0", "editable", path="/src/editpkg", git_commit="e" * 40,
                git_dirty=True),
        package("localtag", "1.0.0+cu121", "directory", path="/src/localtag"),
        package("numpy", "2.1.0"),
        package("nvidia-cudnn-cu12", "8.9.2.26"),
        package("remote", "1.0", "archive", url="https://files.example/remote-1.0.tar.gz",
                hash="sha256:" + "c" * 64),
        package("torch", "2.3.1+cu121", url="https://download.pytorch.org/whl/cu121"),
        package("vcspkg", "1.2.0", "vcs", url="https://github.com/acme/vcspkg", vcs="git",
                commit="f" * 40, requested_revision="v1.2.0"),
        package("wheelpkg", "2.0.0", "archive", path="/w/wheelpkg-2.0.0-py3-none-any.whl",
                hash="sha256:" + "d" * 64),
    )
    frameworks = {"torch": {"version": "2.3.1+cu121", "build": "cuda", "cuda": "12.1",
                            "cudnn": "8.9.2.26", "nccl": "2.20.5"},
                  "cuda_libraries": {"cudnn": {"version": "8.9.2.26",
                                               "from": "nvidia-cudnn-cu12"}}}
    return make_lock(packages=packages, **{"frameworks": frameworks, **overrides})


def os_inventory():
    return ospkgs.inventory({
        ospkgs.DPKG_STATUS: (FIXTURES / "dpkg-status-bookworm.excerpt").read_bytes(),
        "usr/lib/os-release": (FIXTURES / "os-release-bookworm").read_bytes()})


def full_input(**changes):
    return SbomInput(**{"lock": zoo_lock(), "image": IMAGE, "base": BASE, "os": os_inventory(),
                        "created": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
                        "run_id": "0" * 32, **changes})


@pytest.mark.parametrize("name, purl", [
    ("numpy", "pkg:pypi/numpy@2.1.0"),
    ("torch", "pkg:pypi/torch@2.3.1%2Bcu121?repository_url=https://download.pytorch.org/whl/cu121"),
    ("vcspkg", "pkg:pypi/vcspkg@1.2.0?vcs_url=git%2Bhttps://github.com/acme/vcspkg%40" + "f" * 40),
    ("wheelpkg", "pkg:pypi/wheelpkg@2.0.0?file_name=wheelpkg-2.0.0-py3-none-any.whl"),
    ("remote", "pkg:pypi/remote@1.0?download_url=https://files.example/remote-1.0.tar.gz"),
    ("editpkg", "pkg:pypi/editpkg@0.3.0"),
    ("localtag", "pkg:pypi/localtag@1.0.0%2Bcu121"),
])
def test_every_source_kind_has_its_package_url(name, purl):
    lock = zoo_lock()
    assert package_purl(lock.package(name), lock) == purl


def test_a_private_index_is_the_purls_repository_url():
    lock = make_lock(packages=(package("numpy", "2.1.0"),),
                     index={"index_url": "https://pypi.acme.internal/simple/"})
    assert package_purl(lock.package("numpy"), lock) == \
        "pkg:pypi/numpy@2.1.0?repository_url=https://pypi.acme.internal/simple"


def test_images_are_oci_purls_with_their_repository():
    hub = image_item(BASE, "base", None)
    assert hub.purl == f"pkg:oci/python@sha256:{'b' * 64}?repository_url=docker.io/library/python"
    assert hub.sha256 == "b" * 64 and hub.version == "sha256:" + "b" * 64
    local = image_item(IMAGE, "image", None)
    assert local.purl.endswith("?repository_url=127.0.0.1:5000/team/proj") and \
        local.name == "127.0.0.1:5000/team/proj"
    engine_only = image_item("sha256:" + "e" * 64, "image", None)
    assert engine_only.purl is None and engine_only.version == "sha256:" + "e" * 64


def test_frameworks_carry_their_cuda_libraries():
    items = {i.ref: i for i in inventory(full_input()).items}
    torch = next(i for i in items.values() if i.name == "torch")
    cudnn_wheel = next(i for i in items.values() if i.name == "nvidia-cudnn-cu12")
    assert torch.type == "framework" and ("envlock:framework.cuda", "12.1") in torch.properties
    assert cudnn_wheel.parent == torch.ref  # shipped as a wheel: that wheel, under torch
    assert items["cuda@12.1"].parent == torch.ref and items["nccl@2.20.5"].parent == torch.ref
    assert "cudnn@8.9.2.26" not in items  # not listed twice


@pytest.mark.extra("jsonschema")
def test_cyclonedx_validates_against_the_1_6_schema_and_lists_everything():
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = render(full_input()).decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6" and bom["metadata"]["timestamp"].startswith("2024-05-01")
    assert bom["metadata"]["component"]["version"] == IMAGE.split("@")[1]
    purls = {c.get("purl") for c in bom["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12" in purls
    assert "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12" in purls
    wheel = next(c for c in bom["components"] if c["name"] == "wheelpkg")
    assert wheel["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    vcs = next(c for c in bom["components"] if c["name"] == "vcspkg")
    assert vcs["externalReferences"][0] == {"type": "vcs",
                                            "url": "https://github.com/acme/vcspkg"}
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    top = bom["metadata"]["component"]["bom-ref"]
    base = next(c["bom-ref"] for c in bom["components"] if c["name"] == "docker.io/library/python")
    assert base in deps[top] and deps[base] == {"os:debian@12"}
    assert "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12" in deps["os:debian@12"]
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["envlock:host.nvidia_driver"] == "535.104.05"
    assert props["envlock:run_id"] == "0" * 32


def test_spdx_parses_back_and_validates():
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    data = render(full_input(), "spdx-json")
    path = Path(__file__).parent / "_sbom_probe.spdx.json"
    path.write_bytes(data)
    try:
        document = parse_file(str(path))
    finally:
        path.unlink()
    assert validate_full_spdx_document(document) == []
    names = {p.name for p in document.packages}
    assert {"torch", "vcspkg", "libc6", "cpython", "docker.io/library/python"} <= names
    torch = next(p for p in document.packages if p.name == "torch")
    assert torch.external_references[0].locator.startswith("pkg:pypi/torch@2.3.1%2Bcu121")
    assert document.creation_info.created == datetime(2024, 5, 1, 12, 0)


def test_local_sources_are_no_download_locations_but_the_spdx_document_validates():
    """pip records local archives as file:// URLs and git+file:// repositories: neither is
    a download location SPDX accepts, so they are NOASSERTION (the purl keeps the file)."""
    lock = make_lock(packages=(
        package("wheelpkg", "2.0.0", "archive", url="file:///w/wheelpkg-2.0.0-py3-none-any.whl",
                hash="sha256:" + "d" * 64),
        package("vcspkg", "1.2.0", "vcs", url="file:///src/vcspkg", vcs="git",
                commit="f" * 40)))
    document = json.loads(render(SbomInput(lock=lock), "spdx-json"))
    locations = {p["name"]: p["downloadLocation"] for p in document["packages"]}
    assert locations["wheelpkg"] == locations["vcspkg"] == "NOASSERTION"


@pytest.mark.parametrize("fmt", ["cyclonedx-json", "spdx-json"])
def test_the_same_inputs_give_the_same_bytes_and_other_inputs_another_serial(fmt):
    assert render(full_input(), fmt) == render(full_input(), fmt)
    other = full_input(image=IMAGE.replace("a" * 64, "9" * 64))
    assert serial_number(other) != serial_number(full_input())
    assert render(other, fmt) != render(full_input(), fmt)


def test_without_an_image_the_sbom_describes_the_locked_environment():
    lock = zoo_lock()
    bom = json.loads(render(SbomInput(lock=lock)))
    assert bom["metadata"]["component"]["version"] == lock.env_digest
    assert bom["metadata"]["timestamp"].startswith("1980-01-01")
    assert not any(c.get("purl", "").startswith("pkg:deb/") for c in bom["components"])


def test_the_time_is_the_runs_start_else_source_date_epoch_else_fixed():
    assert created_at("2024-05-01T12:00:00Z", {}) == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert created_at(None, {"SOURCE_DATE_EPOCH": "1700000000"}) == \
        datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert created_at(None, {"SOURCE_DATE_EPOCH": "soon"}) == EPOCH == created_at(None, {})


def test_the_referrer_manifest_points_at_the_image_and_carries_the_document():
    from envlock.operations.sbom import ARTIFACT_TYPE, fallback_tag, referrer_manifest

    digest = "sha256:" + "a" * 64
    manifest = json.loads(referrer_manifest(
        ("application/vnd.oci.image.manifest.v1+json", digest, 1234), b'{"bom": 1}',
        "2024-05-01T12:00:00Z"))
    assert manifest["artifactType"] == ARTIFACT_TYPE == "application/vnd.cyclonedx+json"
    assert manifest["subject"] == {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": digest, "size": 1234}
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["layers"][0]["mediaType"] == ARTIFACT_TYPE
    assert fallback_tag(digest) == "sha256-" + "a" * 64 + ".sbom"
