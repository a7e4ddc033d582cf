"""Capture where there is no Docker daemon: a container standing in for a Kubernetes pod or
a CI runner (no socket, no DOCKER_HOST) trains, runs `envlock capture` against the loopback
registry and a tracking server, and the host replays the run from the image it pushed.

The container is the test base image (Debian, Python 3.11.2, no git) with this checkout's
envlock, its interpreter and the experiment's venv mounted at their own paths, as a pod
gets its software from a volume; the host's pip configuration and package mirrors are
mounted too (the cluster's package mirror), so provisioning works as on the host."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

from tests.conftest import ROOT, run_envlock

TRAIN = """\
import mlflow

with mlflow.start_run(run_name="pod-train") as run:
    mlflow.log_param("lr", 0.1)
    for step, loss in enumerate([0.9, 0.5, 0.25]):
        mlflow.log_metric("loss", loss, step=step)
    print("RUN", run.info.run_id)
"""


def _same_path(*paths: str | Path) -> dict[str, dict[str, str]]:
    return {str(p): {"bind": str(p), "mode": "ro"} for p in paths if Path(p).exists()}


#: The host's pip configuration and package mirrors, as a cluster's pods would see theirs.
PIP_SETUP = ("/etc/pip.conf", "/etc/xdg/pip", "/opt/pypi", "/opt/pypi-more", "/opt/wheels")


def test_capture_in_a_container_without_an_engine_then_replay_from_the_host(
        experiment_venv, infra, mlflow_server, docker_client, tmp_path, created_images):
    project = tmp_path / "pod-project"  # not a git repository: packed file by file
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    cache = tmp_path / "pod-cache"
    cache.mkdir()
    # The pod's wheel-cache volume, filled beforehand (here from this host): the pod then
    # provisions without reaching a package index.
    lock = tmp_path / "experiment.lock.yaml"
    run_envlock("lock", "--python", str(experiment_venv), "-o", str(lock), "--no-gpu",
                check=True)
    from envlock.model import lockfile
    from envlock.operations.build.provision import provision

    provision(lockfile.load(lock), tmp_path / "wheelhouse", cache=cache / "wheels")
    for path in (project, cache):
        path.chmod(0o777)
    repo = f"{infra.registry}/tests/pod-{uuid.uuid4().hex[:8]}"
    envlock = f"{sys.executable} -m envlock"  # this checkout's, mounted read-only
    script = (
        "set -e; test ! -S /var/run/docker.sock; test -z \"${DOCKER_HOST:-}\"; "
        "! command -v git; "
        f"run=$({experiment_venv} train.py | sed -n 's/^RUN //p'); "
        f"{envlock} capture --run-id \"$run\" --python {experiment_venv} "
        f"--command 'python train.py' --registry {repo} --base-image {infra.base_image} "
        "--json")
    out = docker_client.containers.run(
        infra.base_image, ["/bin/sh", "-c", script], remove=True, network_mode="host",
        user="0:0", working_dir="/work/project", stderr=False,  # /root holds the interpreter
        environment={"MLFLOW_TRACKING_URI": mlflow_server, "ENVLOCK_CACHE": "/cache",
                     "HOME": "/tmp", "CI": "1", "GIT_PYTHON_REFRESH": "quiet",
                     "PYTHONDONTWRITEBYTECODE": "1"},
        volumes={str(project): {"bind": "/work/project", "mode": "rw"},
                 str(cache): {"bind": "/cache", "mode": "rw"},
                 **_same_path(ROOT, sys.base_prefix, experiment_venv.parent.parent,
                              *PIP_SETUP)})
    captured = json.loads(out.decode())["result"]
    print("capture in the container:", captured["built"]["timings"])  # shown with -s
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
