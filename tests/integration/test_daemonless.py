"""Capture where there is no Docker daemon: a container standing in for a Kubernetes pod or
a CI runner (no socket, no DOCKER_HOST) trains, runs `envlock capture` against the loopback
registry and a tracking server, and the host replays the run from the image it pushed.

The container's image holds envlock itself, built by envlock's own daemonless builder from
a venv on this host (system Python 3.11.2 = the test base image's): no Dockerfile, no pip
inside the container, the wheels come from the wheel cache the host build filled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_envlock
from tests.integration.conftest import SYSTEM_PYTHON, pip

TRAIN = """\
import mlflow

with mlflow.start_run(run_name="pod-train") as run:
    mlflow.log_param("lr", 0.1)
    for step, loss in enumerate([0.9, 0.5, 0.25]):
        mlflow.log_metric("loss", loss, step=step)
    print("RUN", run.info.run_id)
"""


@pytest.fixture(scope="module")
def tool_image(tmp_path_factory, infra, created_images):
    """An image whose venv holds envlock (and its MLflow client): ``(pinned, wheel cache)``."""
    work = tmp_path_factory.mktemp("tool")
    venv_dir = work / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv_dir)], check=True)
    python = venv_dir / "bin" / "python"
    build_tree = work / "src"  # a copy: the build must not litter the checkout
    shutil.copytree(ROOT, build_tree, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "__pycache__", ".pytest_cache", "tests"))
    pip(python, "install", "--no-build-isolation", str(build_tree))
    lock = work / "tool.lock.yaml"
    run_envlock("lock", "--python", str(python), "-o", str(lock), "--no-gpu", check=True)
    cache = work / "cache"
    result = run_envlock("build", str(lock), "--env-only", "--builder", "oci", "--base-image",
                         infra.base_image, "--registry", f"{infra.registry}/tests/envlock-tool",
                         "--json", env={"ENVLOCK_CACHE": str(cache), "CI": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    created_images.add(payload["pinned"])
    return payload["pinned"], cache / "wheels"


def test_capture_in_a_container_without_an_engine_then_replay_from_the_host(
        tool_image, infra, mlflow_server, docker_client, tmp_path, created_images):
    image, wheels = tool_image
    project = tmp_path / "pod-project"  # not a git repository: packed file by file
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    cache = tmp_path / "pod-cache"
    shutil.copytree(wheels, cache / "wheels")  # what a pod's cache volume would hold
    for path in (project, cache, *cache.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o666)
    repo = f"{infra.registry}/tests/pod-{uuid.uuid4().hex[:8]}"
    script = (
        "set -e; test ! -S /var/run/docker.sock; test -z \"${DOCKER_HOST:-}\"; "
        "run=$(python train.py | sed -n 's/^RUN //p'); "
        f"envlock capture --run-id \"$run\" --command 'python train.py' --registry {repo} "
        f"--base-image {infra.base_image} --json")
    out = docker_client.containers.run(
        image, ["/bin/sh", "-c", script], remove=True, network_mode="host",
        user="1000:1000", working_dir="/work/project", stderr=False,
        environment={"MLFLOW_TRACKING_URI": mlflow_server, "ENVLOCK_CACHE": "/cache",
                     "HOME": "/tmp", "CI": "1"},
        volumes={str(project): {"bind": "/work/project", "mode": "rw"},
                 str(cache): {"bind": "/cache", "mode": "rw"}})
    captured = json.loads(out.decode())["result"]
    created_images.add(captured["image"])
    built = captured["built"]
    assert built["builder"] == "oci" and built["env_reused"] is None  # chosen: no engine
    assert built["fidelity"]["ok"] and built["fidelity"]["where"] == "staged environment"
    assert captured["image"].startswith(f"{repo}@sha256:")
    # The pushed image is what the run points at, and the host replays it from there.
    from mlflow.tracking import MlflowClient

    run = MlflowClient(mlflow_server).get_run(captured["run_id"])
    assert run.data.tags["envlock.image"] == captured["image"]
    replay = run_envlock("replay", captured["run_id"], "--json",
                         env={"MLFLOW_TRACKING_URI": mlflow_server, "CI": "1"})
    assert replay.returncode == 0, replay.stderr[-3000:]
    comparison = json.loads(replay.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True, comparison
    assert os.path.exists(project / "train.py")
    assert not (Path(str(project)) / ".git").exists()
