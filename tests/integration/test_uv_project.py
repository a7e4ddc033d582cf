"""A uv project as uv users have one: `uv init`, `uv add`, uv.lock committed, `.venv` made
by uv, the experiment run with `uv run train.py`. envlock records uv.lock, captures the run
with that command and replays it in an image that has no uv: reproduced. (Real uv, real
MLflow SQLite store, real engine and registry.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, run_envlock
from tests.integration.conftest import TRAIN, same_mlflow

REPO = f"tests/uv-{uuid.uuid4().hex[:8]}"


def uv(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """uv from the test extras (beside this interpreter), with no Python downloads: the
    project's interpreter is the system Python 3.11 (= the test base image's)."""
    binary = Path(sys.executable).with_name("uv")
    assert binary.exists(), f"{binary} is missing: pip install -e '.[test]' installs uv"
    result = subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never",
                                              "UV_PYTHON": "/usr/bin/python3", **(env or {})})
    assert result.returncode == 0, f"uv {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def uv_project(tmp_path_factory) -> tuple[Path, str]:
    """The project (committed, uv.lock included) and its store; one run of `uv run train.py`."""
    root = tmp_path_factory.mktemp("uvproject") / "demo"
    uv("init", "-q", "--app", "--no-readme", "--vcs", "none", root.name, cwd=root.parent)
    uv("add", "-q", *same_mlflow("mlflow-skinny"), "sqlalchemy", "alembic", "six==1.16.0",
       cwd=root)
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text(".venv/\nmlflow.db\nmlruns/\n.envlock/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a uv project")
    store = f"sqlite:///{root.parent}/mlflow.db"
    uv("run", "train.py", cwd=root, env={"MLFLOW_TRACKING_URI": store})
    return root, store


def envlock(root: Path, store: str, *args: str):
    return run_envlock(*args, cwd=root, env={"MLFLOW_TRACKING_URI": store, "CI": "1"})


def test_the_lock_records_uv_lock_and_finds_the_environment_agrees(uv_project, tmp_path):
    root, store = uv_project
    out = tmp_path / "envlock.lock.yaml"
    result = envlock(root, store, "lock", "--python", str(root / ".venv/bin/python"), "-o",
                     str(out), "--no-gpu")
    assert result.returncode == 0, result.stderr[-2000:]
    entry = yaml.safe_load(out.read_text())["index"]["uv_lock"]
    digest = hashlib.sha256((root / "uv.lock").read_bytes()).hexdigest()
    assert entry == {"path": "uv.lock", "sha256": f"sha256:{digest}"}
    assert "uv.lock" not in result.stderr


def test_a_uv_run_command_replays_in_an_image_without_uv(uv_project, infra, created_images):
    root, store = uv_project
    result = envlock(root, store, "capture", "--python", str(root / ".venv/bin/python"),
                     "--command", "uv run train.py", "--base-image", infra.base_image,
                     "--registry", f"{infra.registry}/{REPO}", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    created_images.update({payload["built"]["image"], payload["built"]["env_image"]})
    assert payload["tags"]["envlock.command"] == "uv run train.py"  # as recorded
    assert payload["warnings"] == []
    replay = envlock(root, store, "replay", payload["run_id"], "--json")
    assert replay.returncode == 0, replay.stderr[-3000:]
    comparison = json.loads(replay.stdout)["result"]["comparison"]
    assert comparison["reproduced"] is True
    assert comparison["metrics"] and all(m["delta"] == 0 for m in comparison["metrics"])


def test_a_venv_that_left_uv_lock_behind_is_named(uv_project, tmp_path):
    """Runs last: it changes the project's venv."""
    root, store = uv_project
    uv("pip", "install", "-q", "--python", str(root / ".venv/bin/python"), "six==1.15.0",
       cwd=root)
    out = tmp_path / "envlock.lock.yaml"
    result = envlock(root, store, "lock", "--python", str(root / ".venv/bin/python"), "-o",
                     str(out), "--no-gpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "disagrees with uv.lock in 1 package(s): six 1.15.0 (uv.lock: 1.16.0)" in \
        result.stderr
    assert yaml.safe_load(out.read_text())["index"]["uv_lock"]["disagree"] == [
        "six 1.15.0 (uv.lock: 1.16.0)"]
