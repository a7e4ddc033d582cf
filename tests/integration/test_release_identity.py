"""The previous release and the current tree, on the same inputs, give the same bytes.

The release (``RELEASE``: main's last commit whose lock and image bytes are the intended
ones; move it forward, with the reason in the commit message, only when a change to the
lock's or the image's contents is deliberate) comes out of this repository's own git
history with ``git archive`` and is pip-installed into a venv of its own; its dependencies
are the test environment's (a ``.pth`` file names its site-packages: the same versions, no
second download). Each side has its own envlock cache, so neither reuses what the other
probed, provisioned or assembled. Both lock the same small venv and project, then build it
daemonless (``--builder oci``, no engine) with ``SOURCE_DATE_EPOCH`` set, pushing to the
session's real registry on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: The release the current tree must match byte for byte.
#: Deliberate changes to the lock's bytes: since 0d84c37 (#24) it names distribution-rebuilt
#: packages (Debian's pip and setuptools in a python3 -m venv) by their origin; since the
#: inputs merge (707ff4e, #22) it is schema 3 with an ``inputs`` section.
RELEASE = "a6f64cb238c85310ef2e2a792899674c019776e2"
EPOCH = "1700000000"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = f"tests/identity-{uuid.uuid4().hex[:8]}"


def _git(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=120,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def release_python(tmp_path_factory) -> Path:
    """The release's envlock pip-installed into a venv; that venv's interpreter."""
    if _git("cat-file", "-e", f"{RELEASE}^{{commit}}").returncode != 0:
        pytest.fail(f"commit {RELEASE[:12]} (the release to compare with) is not in this "
                    f"clone's history: clone with full history (git fetch --unshallow)",
                    pytrace=False)
    work = tmp_path_factory.mktemp("release")
    (work / "src").mkdir()
    archive = _git("archive", "--format=tar", RELEASE)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(work / "src")], input=archive.stdout, check=True,
                   timeout=120)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work / "venv")],
                   check=True, timeout=300)
    python = work / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    (Path(site.stdout.strip()) / "envlock-test-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    # This environment's pip installs it (the venv has none of its own; the build backend
    # comes from the package index, as for any install).
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "-q", "--no-deps", str(work / "src")],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    where = subprocess.run([str(python), "-c", "import envlock; print(envlock.__file__)"],
                           capture_output=True, text=True, check=True, cwd=work).stdout.strip()
    assert where.startswith(str(work / "venv")), f"the release venv imports {where}"
    return python


def envlock(python: Path | str, cache: Path, *args: str, cwd: Path
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ENVLOCK_DEBUG"}
    env.update(CI="1", ENVLOCK_CACHE=str(cache), SOURCE_DATE_EPOCH=EPOCH)
    result = subprocess.run([str(python), "-m", "envlock", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"envlock {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


def manifest_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(request, timeout=30) as response:
        return "sha256:" + hashlib.sha256(response.read()).hexdigest()


@pytest.fixture(scope="module")
def sides(release_python, project, infra, tmp_path_factory) -> dict[str, dict[str, object]]:
    """Each side's lock bytes, build result and the registry's manifest digests."""
    out: dict[str, dict[str, object]] = {}
    for side, python in (("release", release_python), ("current", sys.executable)):
        work = tmp_path_factory.mktemp(side)
        lock = work / "envlock.lock.yaml"
        envlock(python, work / "cache", "lock", "--python", str(project.python), "-o",
                str(lock), "--no-gpu", "--command", "python train.py", cwd=project.root)
        repository = f"{REPO}-{side}"
        built = envlock(python, work / "cache", "build", str(lock), "--base-image",
                        infra.base_image, "--registry", f"{infra.registry}/{repository}",
                        "--run-id", "run-1", "--builder", "oci", "--no-cache", "--json",
                        cwd=project.root)
        result = json.loads(built.stdout)["result"]
        assert result["builder"] == "oci" and result["pushed"] is True
        assert result["env_reused"] is None and result["code_reused"] is False
        env_tag = result["env_image"].rsplit(":", 1)[1]
        out[side] = {"lock": lock.read_bytes(), "result": result,
                     "env_manifest": manifest_digest(infra.registry, repository, env_tag),
                     "code_manifest": manifest_digest(infra.registry, repository, "run-1")}
    return out


def test_the_lock_is_byte_identical_to_the_releases(sides):
    assert sides["current"]["lock"] == sides["release"]["lock"]


def test_the_images_are_byte_identical_to_the_releases(sides):
    release, current = sides["release"], sides["current"]
    assert current["env_manifest"] == release["env_manifest"]
    assert current["code_manifest"] == release["code_manifest"]
    for key in ("manifest_digest", "image_id", "env_image_id", "env_digest", "lock_digest",
                "code_digest", "base"):
        assert current["result"][key] == release["result"][key], key  # type: ignore[index]
    assert current["result"]["pinned"].endswith(  # type: ignore[index]
        "@" + str(current["code_manifest"]))
