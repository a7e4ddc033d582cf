"""Other runtimes run and inspect envlock's images (issue #13, part 4).

One MLflow run is captured (built with the Docker engine, pushed to the real loopback
registry); then, with no Docker in the path, Debian's Podman pulls the image the run records
by its digest, runs the experiment as the image's non-root user and passes envlock's own
in-image fidelity check (versions and RECORD hashes against the lock); skopeo reads the same
manifest by digest, with the labels envlock wrote; and ``envlock replay`` reproduces the run
with Podman's Docker-compatible API (``podman system service``) as its engine.

Podman keeps its images in a storage of this module's own (``--root``/``--runroot`` under the
test's temporary folder), removed at the end: overlay, or vfs where that folder is itself on
overlayfs (CI's Debian container), which podman's overlay driver refuses. ``scripts/infra.sh
up`` installs podman and skopeo and writes the one setting podman needs on these machines.
The test registries are plain HTTP: the CLIs get ``--tls-verify=false``, the API service a
registries.conf of its own that marks the registry insecure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from envlock.model import lockfile
from envlock.operations.build import verify_fidelity
from tests.integration.conftest import make_experiment

#: A repository of its own per test session: the registry outlives test runs.
REPO = f"tests/runtimes-{uuid.uuid4().hex[:8]}"
TIMEOUT = 300


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"no `{name}`: run `bash scripts/infra.sh up` (it installs podman and skopeo)",
                    pytrace=False)
    return path


def storage_driver(folder: Path) -> str:
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True,
                        text=True, check=True).stdout.strip()
    return "vfs" if fs == "overlayfs" else "overlay"


@dataclass
class Podman:
    """The podman CLI on a storage of its own."""

    root: Path
    driver: str

    def argv(self, *args: str) -> list[str]:
        return [tool("podman"), "--root", str(self.root / "storage"), "--runroot",
                str(self.root / "run"), "--storage-driver", self.driver, *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=TIMEOUT)
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {out.returncode}:\n{out.stderr}")
        return out

    def run(self, image: str, command: list[str], *, user: str = "0:0",
            stdout_only: bool = False) -> tuple[int, bytes]:
        """``EngineLike.run`` on podman (as ``Engine.run`` on Docker: no network, no
        entrypoint, in /), so envlock's own fidelity check runs through it."""
        out = self("run", "--rm", "--network", "none", "--entrypoint", "", "--workdir", "/",
                   "--user", user, image, *command, check=False)
        return out.returncode, (out.stdout if stdout_only else out.stdout + out.stderr).encode()


def skopeo(*args: str) -> bytes:
    """skopeo's stdout, byte for byte."""
    out = subprocess.run([tool("skopeo"), *args], capture_output=True, timeout=TIMEOUT)
    assert out.returncode == 0, f"skopeo {' '.join(args)}: {out.stderr.decode()}"
    return out.stdout


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    root = tmp_path_factory.mktemp("podman")
    engine = Podman(root, storage_driver(root))
    yield engine
    with contextlib.suppress(Exception):  # best effort: the folder goes with pytest's tmp
        engine("rm", "--all", "--force", check=False)  # none left but by an interrupted test
    shutil.rmtree(root, ignore_errors=True)  # its images: no podman needed for that


@pytest.fixture(scope="module")
def captured(tmp_path_factory, experiment_venv, infra, created_images):
    """A trained run captured with the Docker engine: ``(experiment, run id, capture result,
    the image the run records)``."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("runtimes") / "exp"
    exp = make_experiment(root, experiment_venv, f"sqlite:///{root.parent}/mlflow.db")
    run_id = exp.train()
    payload = exp.capture(run_id, infra, created_images, "--registry",
                          f"{infra.registry}/{REPO}")
    recorded = MlflowClient(exp.store).get_run(run_id).data.tags["envlock.image"]
    assert recorded == payload["image"] and "@sha256:" in recorded
    return exp, run_id, payload, recorded


@pytest.fixture(scope="module")
def podman_api(podman, infra):
    """``podman system service`` on this module's storage: Docker's API on a unix socket."""
    import docker

    conf = podman.root / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{infra.registry}"\ninsecure = true\n')
    sock = podman.root / "api.sock"
    log_path = podman.root / "service.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(podman.argv("system", "service", "--time", "0", f"unix://{sock}"),
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)})
    deadline = time.monotonic() + 30
    while True:
        try:
            docker.DockerClient(base_url=f"unix://{sock}").ping()
            break
        except docker.errors.DockerException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"podman system service did not answer:\n"
                            f"{log_path.read_text()[-2000:]}", pytrace=False)
            time.sleep(0.2)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=30)


# Runs first, on podman's still empty storage: the replay pulls the image through the API.
def test_envlock_replays_the_run_with_podman_as_its_engine(podman, captured, podman_api):
    exp, run_id, _, recorded = captured
    result = exp.envlock("replay", run_id, "--json", DOCKER_HOST=podman_api)
    assert result.returncode == 0, result.stderr[-3000:]
    replay = json.loads(result.stdout)["result"]
    assert replay["image"] == recorded
    assert replay["comparison"]["reproduced"] is True
    assert all(m["delta"] == 0 for m in replay["comparison"]["metrics"])
    # pulled into podman's own storage, not Docker's
    assert podman("image", "exists", recorded, check=False).returncode == 0
    # hardened as under Docker: uid 1000, no capabilities, read-only root, writable workspace
    probe = ("id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
             "touch /opt/x 2>&1 | head -1; touch /workspace/w /tmp/t && echo writable")
    out = exp.envlock("replay", run_id, "--no-track", "--command", probe,
                      DOCKER_HOST=podman_api).stdout
    assert out.splitlines()[0] == "1000"
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
    assert "Read-only file system" in out and "writable" in out


@pytest.fixture(scope="module")
def pulled(podman, captured):
    """The recorded pin pulled with ``podman pull``: podman's ``image inspect`` of it."""
    recorded = captured[3]
    image_id = podman("pull", "--quiet", "--tls-verify=false", recorded).stdout.split()[-1]
    return json.loads(podman("image", "inspect", image_id).stdout)[0]


def test_podman_pulls_the_recorded_pin_and_runs_the_experiment_as_the_image_user(
        podman, captured, pulled):
    exp, run_id, payload, recorded = captured
    assert pulled["Digest"] == recorded.split("@", 1)[1]
    assert f"sha256:{pulled['Id']}" == payload["built"]["image_id"]  # the image Docker built
    assert pulled["Config"]["User"] == "1000:1000"
    # the image's CMD is the locked command; user and workdir come from the image
    ident = podman("run", "--rm", "--network", "none", recorded, "sh", "-c", "id -u; pwd")
    assert ident.stdout.split() == ["1000", "/workspace"]
    from mlflow.tracking import MlflowClient

    metrics = MlflowClient(exp.store).get_run(run_id).data.metrics
    out = podman("run", "--rm", "--network", "none", recorded).stdout
    assert out.strip() == (f"trained: w={metrics['w']:.6f} b={metrics['b']:.6f} "
                           f"loss={metrics['loss']:.6f}")


def test_the_fidelity_check_passes_under_podman_as_under_docker(podman, captured, pulled,
                                                                docker_client):
    from envlock.adapters.engine import Engine

    _, _, payload, recorded = captured
    lock = lockfile.load(payload["lockfile"])
    report = verify_fidelity(podman, recorded, lock)
    assert report["ok"] is True and report["problems"] == []
    # the same files, hashed against the same RECORDs, as under Docker (pulled by the pin:
    # envlock loaded it into Docker by id and pushed it with its registry client)
    docker_client.images.pull(recorded)
    assert report == verify_fidelity(Engine(docker_client), recorded, lock)
    assert report["files_verified"] > 1000 and report["packages"] == len(lock.packages)


def test_skopeo_inspect_by_digest_matches_the_pin_and_its_labels(captured):
    _, run_id, payload, recorded = captured
    lock = lockfile.load(payload["lockfile"])
    reference = f"docker://{recorded}"
    digest = recorded.split("@", 1)[1]
    info = json.loads(skopeo("inspect", "--tls-verify=false", reference))
    assert info["Digest"] == digest
    labels = info["Labels"]
    assert labels["envlock.env_digest"] == lock.env_digest == payload["env_digest"]
    assert labels["envlock.lock_digest"] == lock.lock_digest == payload["lock_digest"]
    assert labels["envlock.run_id"] == run_id
    assert labels["org.opencontainers.image.revision"] == lock.git["commit"]
    raw = skopeo("inspect", "--tls-verify=false", "--raw", reference)
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == digest
    # the manifest's config is the image Docker built: its id is the config's digest
    config = skopeo("inspect", "--tls-verify=false", "--config", "--raw", reference)
    assert json.loads(raw)["config"]["digest"] == payload["built"]["image_id"]
    assert f"sha256:{hashlib.sha256(config).hexdigest()}" == payload["built"]["image_id"]
