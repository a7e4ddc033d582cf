"""Other runtimes run and inspect envlock's images (issue #13, part 4).

An image `envlock build` pushed to the real loopback registry is pulled by its pinned digest
with Debian's Podman, run as the image's own non-root user, and proven there with envlock's
own in-image fidelity check (versions and RECORD hashes against the lock); skopeo reads the
same manifest by digest, with the labels envlock wrote. Podman keeps its images in a storage
of this module's own (``--root``/``--runroot`` under the test's temporary folder), removed at
the end: overlay, or vfs where that folder is itself on overlayfs (CI's Debian container),
which podman's overlay driver refuses. ``scripts/infra.sh up`` installs podman and skopeo and
writes the one setting podman needs on these machines. The test registries are plain HTTP,
hence ``--tls-verify=false``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from envlock.model import lockfile
from envlock.operations.build import verify_fidelity
from tests.conftest import run_envlock

#: A repository of its own per test session: the registry outlives test runs.
REPO = f"tests/runtimes-{uuid.uuid4().hex[:8]}"
TIMEOUT = 300


def storage_driver(folder: Path) -> str:
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True,
                        text=True, check=True).stdout.strip()
    return "vfs" if fs == "overlayfs" else "overlay"


@dataclass
class Podman:
    """The podman CLI on a storage of its own."""

    root: Path
    driver: str

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["podman", "--root", str(self.root / "storage"), "--runroot",
               str(self.root / "run"), "--storage-driver", self.driver, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr}")
        return out

    def run(self, image: str, command: list[str], *, user: str = "0:0",
            stdout_only: bool = False) -> tuple[int, bytes]:
        """``EngineLike.run`` on podman, so envlock's own fidelity check runs through it."""
        out = self("run", "--rm", "--network", "none", "--user", user, image, *command,
                   check=False)
        return out.returncode, (out.stdout if stdout_only else out.stdout + out.stderr).encode()


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"no `{name}`: run `bash scripts/infra.sh up` (it installs podman and skopeo)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    tool("podman")
    root = tmp_path_factory.mktemp("podman")
    engine = Podman(root, storage_driver(root))
    yield engine
    with contextlib.suppress(Exception):  # best effort: the folder goes with pytest's tmp
        engine("rm", "--all", "--force", check=False)
        engine("rmi", "--all", "--force", check=False)
    shutil.rmtree(engine.root, ignore_errors=True)


def skopeo(*args: str) -> bytes:
    """skopeo's stdout, byte for byte."""
    out = subprocess.run([tool("skopeo"), *args], capture_output=True, timeout=TIMEOUT)
    assert out.returncode == 0, f"skopeo {' '.join(args)}: {out.stderr.decode()}"
    return out.stdout


@pytest.fixture(scope="module")
def built(project, infra, created_images):
    """The project's lock built and pushed by envlock: ``(lock path, build result)``."""
    lock = project.lock()
    result = run_envlock("build", str(lock), "--base-image", infra.base_image, "--registry",
                         f"{infra.registry}/{REPO}", "--run-id", "run-1", "--json",
                         env={"CI": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    res = json.loads(result.stdout)["result"]
    created_images.update({res["image"], res["env_image"]})
    assert res["pushed"] is True and "@sha256:" in res["pinned"]
    return lock, res


@pytest.fixture(scope="module")
def pulled(podman, built):
    """The pinned reference pulled by podman: its podman image id."""
    _, res = built
    out = podman("pull", "--quiet", "--tls-verify=false", res["pinned"])
    return out.stdout.strip().splitlines()[-1]


def test_podman_pulls_the_pin_and_runs_the_experiment_as_the_image_user(podman, built, pulled):
    _, res = built
    digest = res["pinned"].split("@", 1)[1]
    inspected = json.loads(podman("image", "inspect", pulled).stdout)[0]
    assert inspected["Digest"] == digest
    assert f"sha256:{inspected['Id']}" == res["image_id"]  # the image Docker built, as is
    assert res["pinned"] in inspected["RepoDigests"]
    assert inspected["Config"]["User"] == "1000:1000"
    # the image's CMD is the locked command; podman picks the user and workdir from the image
    out = podman("run", "--rm", "--network", "none", res["pinned"])
    assert out.stdout.strip() == "result 42 1.16.0 /workspace/mlproj/__init__.py"
    ident = podman("run", "--rm", "--network", "none", res["pinned"], "sh", "-c", "id -u; pwd")
    assert ident.stdout.split() == ["1000", "/workspace"]


def test_the_fidelity_check_passes_under_podman_as_under_docker(podman, built, pulled):
    lock, res = built
    report = verify_fidelity(podman, res["pinned"], lockfile.load(lock))
    assert report["ok"] is True and report["problems"] == []
    # the same files, hashed against the same RECORDs, as the build's check under Docker
    assert report["files_verified"] == res["fidelity"]["files_verified"] > 100
    assert report["packages"] == res["fidelity"]["packages"]


def test_skopeo_inspect_by_digest_matches_the_pin_and_its_labels(built):
    lock_path, res = built
    lock = lockfile.load(lock_path)
    reference = f"docker://{res['pinned']}"
    digest = res["pinned"].split("@", 1)[1]
    info = json.loads(skopeo("inspect", "--tls-verify=false", reference))
    assert info["Digest"] == digest
    labels = info["Labels"]
    assert labels["envlock.env_digest"] == lock.env_digest == res["env_digest"]
    assert labels["envlock.lock_digest"] == lock.lock_digest == res["lock_digest"]
    assert labels["envlock.run_id"] == "run-1"
    assert labels["org.opencontainers.image.revision"] == lock.git["commit"]
    raw = skopeo("inspect", "--tls-verify=false", "--raw", reference)
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == digest
    # the manifest's config is the image Docker built: its id is the config's digest
    assert json.loads(raw)["config"]["digest"] == res["image_id"]
    config = skopeo("inspect", "--tls-verify=false", "--config", "--raw", reference)
    assert f"sha256:{hashlib.sha256(config).hexdigest()}" == res["image_id"]
