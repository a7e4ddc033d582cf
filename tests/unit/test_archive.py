"""The archive format without Docker or MLflow: layout documents, MANIFEST.json, and the
digest checks that guard ``envlock import``."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from envlock.adapters.registry import Chunks as _Chunks
from envlock.adapters.registry import parse_challenge
from envlock.image import oci
from envlock.operations import archive
from envlock.operations.archive import ArchiveError, ImageRecord
from envlock.operations.archive.streams import _atomic

RUN_ID = "a" * 32
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def layer_tar(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def image_files(compressed: bool = True) -> tuple[dict[str, bytes], ImageRecord]:
    """A one-layer image as the files of an OCI layout + docker-archive manifest.json."""
    raw = layer_tar(b"hello\n")
    layer = gzip.compress(raw, mtime=0) if compressed else raw
    layer_digest = oci.sha256_digest(layer)
    manifest = oci.image_manifest(CONFIG, [(layer_digest, len(layer),
                                            oci.layer_media_type(layer))])
    digest = oci.sha256_digest(manifest)
    name = f"127.0.0.1:5055/tests/x:{RUN_ID}"
    files = {"oci-layout": oci.oci_layout(),
             oci.blob_path(oci.sha256_digest(CONFIG)): CONFIG,
             oci.blob_path(layer_digest): layer,
             oci.blob_path(digest): manifest,
             "index.json": oci.index_json(oci.OCI_MANIFEST, digest, len(manifest), name),
             "manifest.json": oci.docker_manifest_json(json.loads(manifest), [name])}
    image = ImageRecord(reference=f"127.0.0.1:5055/tests/x@{digest}", source="registry",
                        name=name, media_type=oci.OCI_MANIFEST, manifest_digest=digest,
                        manifest_size=len(manifest), config_digest=oci.sha256_digest(CONFIG),
                        layers=1, size=len(CONFIG) + len(layer))
    return files, image


def run_json() -> bytes:
    record = {"run_id": RUN_ID, "run_name": "r", "experiment_name": "Default",
              "status": "FINISHED", "start_time": 1, "end_time": 2, "params": {"seed": "0"},
              "tags": {"envlock.image": "x"}, "metrics": {"loss": [
                  {"value": 1.0, "step": 0, "timestamp": 1}]}}
    return json.dumps(archive.portable_record(record, "sqlite:///a.db")).encode()


def archive_files(**override: bytes) -> dict[str, bytes]:
    files, image = image_files()
    files[archive.RUN_JSON] = run_json()
    files["envlock/envlock.lock.yaml"] = b"schema_version: 1\n"
    files.update(override)
    listing = {path: (oci.sha256_digest(data), len(data)) for path, data in files.items()}
    files[archive.MANIFEST] = archive.build_manifest(listing, image, RUN_ID)
    return files


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def flip_byte(path: Path, member: str) -> None:
    with tarfile.open(path) as tar:
        offset = tar.getmember(member).offset_data
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- verification


def test_a_complete_archive_verifies(tmp_path):
    files = archive_files()
    contents = archive.verify(write_tar(tmp_path / "a.tar", files))
    assert contents.sha256 == oci.sha256_digest((tmp_path / "a.tar").read_bytes())
    assert contents.image.manifest_digest == json.loads(files["index.json"])[
        "manifests"][0]["digest"]
    assert contents.run["params"] == {"seed": "0"}
    assert contents.artifacts() == ["envlock/envlock.lock.yaml"]
    assert [d["digest"] for d in contents.blobs()][0] == oci.sha256_digest(CONFIG)
    layer = oci.blob_path(contents.blobs()[1]["digest"])
    assert contents.read(layer) == files[layer]


def test_a_long_metric_history_verifies(tmp_path):
    record = json.loads(run_json())
    record["metrics"]["loss"] = [{"value": 0.5, "step": i, "timestamp": 1700000000000 + i}
                                 for i in range(120_000)]
    files = archive_files(**{archive.RUN_JSON: json.dumps(record).encode()})
    assert len(files[archive.RUN_JSON]) > 4 << 20
    contents = archive.verify(write_tar(tmp_path / "a.tar", files))
    assert len(contents.run["metrics"]["loss"]) == 120_000


def test_a_flipped_byte_in_a_blob_is_refused(tmp_path):
    files = archive_files()
    path = write_tar(tmp_path / "a.tar", files)
    layer = next(p for p, d in files.items() if p.startswith("blobs/") and d[:2] == b"\x1f\x8b")
    flip_byte(path, layer)
    with pytest.raises(ArchiveError, match="does not match"):
        archive.verify(path)


@pytest.mark.parametrize("member", [archive.RUN_JSON, "envlock/envlock.lock.yaml",
                                    "index.json", "manifest.json"])
def test_a_modified_file_is_refused(tmp_path, member):
    path = write_tar(tmp_path / "a.tar", archive_files())
    flip_byte(path, member)
    with pytest.raises(ArchiveError, match=f"{member} does not match its sha256"):
        archive.verify(path)


def test_a_file_not_listed_in_the_manifest_is_refused(tmp_path):
    files = archive_files()
    files["envlock/extra.txt"] = b"smuggled"
    with pytest.raises(ArchiveError, match="extra.txt is not listed"):
        archive.verify(write_tar(tmp_path / "a.tar", files))


def test_a_missing_blob_is_refused(tmp_path):
    files, _ = image_files()
    layer = next(p for p, d in files.items() if p.startswith("blobs/") and d[:2] == b"\x1f\x8b")
    full = archive_files()
    del full[layer]
    with pytest.raises(ArchiveError, match=f"{layer} is listed in .* but missing"):
        archive.verify(write_tar(tmp_path / "a.tar", full))


def test_a_consistent_but_wrong_docker_manifest_is_refused():
    files = archive_files()
    members = {p: archive.Member(p, oci.sha256_digest(d), len(d), 0) for p, d in files.items()}
    docker = json.loads(files["manifest.json"])
    docker[0]["Layers"] = []
    small = dict(files, **{"manifest.json": json.dumps(docker).encode()})
    members["manifest.json"] = archive.Member("manifest.json",
                                              oci.sha256_digest(small["manifest.json"]),
                                              len(small["manifest.json"]), 0)
    listing = {p: (m.sha256, m.size) for p, m in members.items() if p != archive.MANIFEST}
    _, image = image_files()
    small[archive.MANIFEST] = archive.build_manifest(listing, image, RUN_ID)
    members[archive.MANIFEST] = archive.Member(archive.MANIFEST, "", 0, 0)
    with pytest.raises(ArchiveError, match="manifest.json .* does not match"):
        archive.check_contents(members, small)


def test_another_schema_is_refused(tmp_path):
    files = archive_files()
    document = json.loads(files[archive.MANIFEST])
    document["schema"] = "envlock.archive/99"
    files[archive.MANIFEST] = json.dumps(document).encode()
    with pytest.raises(ArchiveError, match="envlock.archive/99"):
        archive.verify(write_tar(tmp_path / "a.tar", files))


def test_a_truncated_archive_is_refused(tmp_path):
    path = write_tar(tmp_path / "a.tar", archive_files())
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ArchiveError):
        archive.verify(path)


def test_links_and_escaping_names_are_refused(tmp_path):
    for name in ("../evil", "/etc/passwd", "blobs/../../x"):
        with pytest.raises(ArchiveError, match="unsafe member name"):
            archive.safe_name(name)
    assert archive.safe_name("./blobs/sha256/ab") == "blobs/sha256/ab"
    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ArchiveError, match="not a regular file"):
        archive.verify(path)


def test_a_missing_file_is_a_usage_error(tmp_path):
    from envlock.errors import UsageError

    with pytest.raises(UsageError, match="no such archive"):
        archive.verify(tmp_path / "nope.tar")


# ---------------------------------------------------------------- documents


def test_the_manifest_lists_files_sorted_with_the_image_digests():
    _, image = image_files()
    data = archive.build_manifest({"b": ("sha256:" + "1" * 64, 2),
                                   "a": ("sha256:" + "2" * 64, 1)}, image, RUN_ID)
    document = json.loads(data)
    assert document["schema"] == "envlock.archive/1" and document["run_id"] == RUN_ID
    assert [f["path"] for f in document["files"]] == ["a", "b"]
    assert document["image"]["manifest_digest"] == image.manifest_digest
    assert document["image"]["config_digest"] == image.config_digest
    assert data == archive.build_manifest({"a": ("sha256:" + "2" * 64, 1),
                                           "b": ("sha256:" + "1" * 64, 2)}, image, RUN_ID)


def test_the_docker_manifest_points_at_the_layout_blobs():
    files, image = image_files()
    manifest = json.loads(files[oci.blob_path(image.manifest_digest)])
    docker = json.loads(files["manifest.json"])
    assert docker == [{"Config": oci.blob_path(image.config_digest),
                       "RepoTags": [image.name],
                       "Layers": [oci.blob_path(manifest["layers"][0]["digest"])]}]
    index = json.loads(files["index.json"])["manifests"][0]
    assert index["annotations"] == {oci.CONTAINERD_NAME: image.name, oci.REF_NAME: RUN_ID}


def test_layer_media_types_follow_the_compression():
    assert oci.layer_media_type(b"\x1f\x8b\x08\x00") == oci.OCI_LAYER + "+gzip"
    assert oci.layer_media_type(b"\x28\xb5\x2f\xfd") == oci.OCI_LAYER + "+zstd"
    assert oci.layer_media_type(b"hell") == oci.OCI_LAYER


def test_an_image_index_is_not_a_single_image():
    with pytest.raises(ValueError, match="multi-platform"):
        oci.manifest_blobs({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []})
    with pytest.raises(ValueError, match="malformed descriptor"):
        oci.manifest_blobs({"schemaVersion": 2, "config": {"digest": "sha256:x", "size": 1}})


def test_the_run_record_drops_secret_tags_and_credentials():
    record = {"run_id": RUN_ID, "params": {"url": "https://u:pw@host/x"},
              "tags": {"mlflow.user": "me", "DEPLOY_TOKEN": "t0ps3cret",
                       "mlflow.source.git.repoURL": "https://bob:hunter2@git.example/r.git"},
              "metrics": {}}
    portable = archive.portable_record(record, "https://user:pass@mlflow.example:5000")
    text = json.dumps(portable)
    assert "t0ps3cret" not in text and "hunter2" not in text and "pass@" not in text
    assert portable["withheld_tags"] == ["DEPLOY_TOKEN"]
    assert portable["source_tracking_uri"] == "https://mlflow.example:5000"
    assert portable["tags"]["mlflow.source.git.repoURL"] == "https://git.example/r.git"
    assert portable["params"]["url"] == "https://host/x"
    copied = archive.tags_to_copy({"tags": {"envlock.image": "x", "mlflow.runName": "n",
                                            "envlock.imported_from": "y", "k": "v"}})
    assert copied == {"k": "v"}


# ---------------------------------------------------------------- references and helpers


def test_references_split_into_registry_repository_tag_and_digest():
    digest = "sha256:" + "e" * 64
    ref = oci.parse_reference(f"127.0.0.1:5055/team/proj@{digest}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5055", "team/proj", None, digest)
    assert ref.pinned(digest) == f"127.0.0.1:5055/team/proj@{digest}"
    assert oci.parse_reference("localhost/a:1").tag == "1"
    for bad in ("proj/only", "host.example/UPPER", f"h.example/a@sha256:{'z' * 64}"):
        with pytest.raises(ValueError):
            oci.parse_reference(bad)


def test_blob_paths_and_digests_map_both_ways():
    digest = "sha256:" + "0" * 64
    assert oci.digest_of_path(oci.blob_path(digest)) == digest
    assert oci.digest_of_path("blobs/sha256/short") is None
    assert oci.digest_of_path("envlock/run.json") is None
    with pytest.raises(ValueError):
        oci.blob_path("sha256:../../etc")


def test_auth_challenges_are_parsed():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:a/b:pull"}
    assert parse_challenge('Basic realm="envlock-test"') == ("basic",
                                                                 {"realm": "envlock-test"})


def test_chunks_read_as_a_file():
    reader = _Chunks([b"abc", b"", b"defg", b"h"])
    assert reader.read(2) == b"ab" and reader.read(4) == b"cdef" and reader.read() == b"gh"
    assert reader.read(1) == b""


def test_a_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.tar"
    with pytest.raises(RuntimeError), _atomic(target) as handle:
        handle.write(b"half an archive")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with _atomic(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("reference, registry, repository, tag", [
    ("127.0.0.1:5055/team/proj:run-1", "127.0.0.1:5055", "team/proj", "run-1"),
    ("localhost/proj", "localhost", "proj", None),
    ("registry.example.com/a/b@sha256:" + "0" * 64, "registry.example.com", "a/b", None),
    ("python:3.11", "docker.io", "python", "3.11"),
    ("team/proj:latest", "docker.io", "team/proj", "latest"),
    ("envlock-test/python:3.11-bookworm", "docker.io", "envlock-test/python", "3.11-bookworm"),
])
def test_one_reference_parser_with_dockers_host_rule(reference, registry, repository, tag):
    from envlock.adapters.engine import registry_of, split_tag

    ref = oci.parse_reference(reference, require_registry=False)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert registry_of(reference) == registry
    assert split_tag(reference) == (reference.partition("@")[0].removesuffix(f":{tag}")
                                    if tag else reference.partition("@")[0], tag)


def test_a_push_target_must_name_its_registry():
    with pytest.raises(ValueError, match="does not name a registry"):
        oci.parse_reference("team/proj")
