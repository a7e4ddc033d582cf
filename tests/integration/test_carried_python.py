"""An interpreter whose exact version no base has is carried into the image (issue #24 item
4): a run made with pyenv's Python 3.11.7 (the test base has Debian's 3.11.2) is captured,
its interpreter tree recorded in the lock and written as a layer of its own at the same
path, and the replay in that image reproduces. (Real pyenv build, uv, MLflow SQLite store,
engine, registry and OCI runtime.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_envlock
from tests.integration.conftest import make_experiment, same_mlflow

PYENV = Path("/root/.pyenv/versions/3.11.7")
REPO = f"tests/carried-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pyenv_experiment(tmp_path_factory, infra):
    """An experiment in a venv (made by uv) of pyenv's 3.11.7, and one run of it."""
    if not (PYENV / "bin" / "python3.11").exists():
        message = f"{PYENV} (pyenv's CPython 3.11.7) is missing on this machine"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert infra.base_python != "3.11.7", "the test needs a base without Python 3.11.7"
    work = tmp_path_factory.mktemp("carried")
    uv = str(Path(sys.executable).with_name("uv"))
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    for args in (["venv", "-q", "--python", str(PYENV / "bin" / "python3.11"),
                  str(work / "venv")],
                 ["pip", "install", "-q", "--python", str(work / "venv" / "bin" / "python"),
                  *same_mlflow("mlflow-skinny"), "sqlalchemy", "alembic"]):
        done = subprocess.run([uv, *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    experiment = make_experiment(work / "exp", work / "venv" / "bin" / "python",
                                 f"sqlite:///{work}/mlflow.db")
    return experiment, experiment.train()


def test_a_run_on_an_interpreter_no_base_has_is_carried_and_replays(
        pyenv_experiment, infra, created_images):
    experiment, run_id = pyenv_experiment
    result = experiment.envlock("capture", "--run-id", run_id, "--python",
                                str(experiment.python), "--command", "python train.py",
                                "--base-image", infra.base_image, "--registry",
                                f"{infra.registry}/{REPO}", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    created_images.update({payload["built"]["image"], payload["built"]["env_image"]})
    assert f"carrying Python 3.11.7 (pyenv, {PYENV}) into the image" in result.stderr
    assert f"has Python {infra.base_python}" in result.stderr
    lock = yaml.safe_load(Path(payload["lockfile"]).read_text())
    carried = lock["python"]["carried"]
    assert carried["kind"] == "pyenv" and carried["prefix"] == str(PYENV)
    assert carried["digest"].startswith("sha256:") and carried["files"] > 1000

    from envlock.adapters.ocistore import Store
    from envlock.model.lockfile import load
    from envlock.operations.build import interpreter

    # the tree's layer, written again into a new store: the same bytes as the image's
    locked = load(payload["lockfile"])
    again = interpreter.layer(Store(Path(experiment.root.parent / "store2")), locked,
                              interpreter.verified(locked))
    manifest = json.loads(Store().read(payload["built"]["manifest_digest"]))
    assert manifest["layers"][-3]["digest"] == again.digest  # base…, python, env, code

    replay = experiment.envlock("replay", run_id, "--json")
    assert replay.returncode == 0, replay.stderr[-3000:]
    comparison = json.loads(replay.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True
    assert comparison["metrics"] and all(m["delta"] == 0 for m in comparison["metrics"])


def test_a_lock_that_carries_nothing_is_refused_with_the_way_forward(
        pyenv_experiment, infra, tmp_path):
    experiment, _ = pyenv_experiment
    out = tmp_path / "envlock.lock.yaml"
    locked = run_envlock("lock", "--python", str(experiment.python), "-o", str(out),
                         "--no-gpu", cwd=experiment.root)
    assert locked.returncode == 0, locked.stderr[-2000:]
    assert "carried" not in yaml.safe_load(out.read_text())["python"]
    built = run_envlock("build", str(out), "--base-image", infra.base_image, "--env-only",
                        "--no-push", cwd=experiment.root)
    assert built.returncode == 2, built.stderr[-2000:]
    assert f"has Python {infra.base_python}, the lock needs 3.11.7" in built.stderr
    assert "an interpreter of that version that envlock can carry" in built.stderr

