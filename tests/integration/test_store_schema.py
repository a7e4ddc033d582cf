"""envlock never changes the schema of a user's tracking store (issue #24).

A real SQLite store written by an older MLflow (mlflow-skinny 3.10.1, installed from the
package index into a training venv, whose alembic head is not that of the MLflow envlock
runs with) keeps its revision and its bytes through every command, each of which refuses
it with exit 2 and a one-line fix; the fix it names works; a store at envlock's own head
works as before. MLflow itself (envlock's, opening a copy) would have migrated the store."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_envlock
from tests.integration.conftest import pip, system_venv

OLD_MLFLOW = "3.10.1"
OLD_REVISION = "1b5f0d9ad7c1"  # the alembic head of mlflow 3.10.0 and 3.10.1

TRAIN = """import mlflow
mlflow.set_tracking_uri("sqlite:///mlflow.db")
with mlflow.start_run() as run:
    mlflow.log_param("lr", 0.1)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_text("weights", "model.txt")
    print(run.info.run_id)
"""


@dataclass(frozen=True)
class OldStore:
    root: Path  # the project: train.py, mlflow.db, mlruns/
    python: Path  # the training venv's interpreter (MLflow OLD_MLFLOW)
    run_id: str

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db}"

    def state(self) -> tuple[str, str]:
        """The store's alembic revision (read-only) and the sha256 of its file."""
        return revision(self.db), hashlib.sha256(self.db.read_bytes()).hexdigest()


def revision(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def tables(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> OldStore:
    root = tmp_path_factory.mktemp("old-store")
    python = system_venv(root / "venv", f"mlflow-skinny=={OLD_MLFLOW}", "sqlalchemy", "alembic")
    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    done = subprocess.run([str(python), "train.py"], cwd=project, capture_output=True,
                          text=True, timeout=300, check=True)
    store = OldStore(project, python, done.stdout.strip().splitlines()[-1])
    assert store.state()[0] == OLD_REVISION
    return store


def envlock_head() -> str:
    from envlock.adapters.tracking import schema

    return schema.installed().head


def test_the_old_store_is_one_that_mlflow_itself_would_migrate(old_store, tmp_path):
    """The premise: envlock's MLflow, opening a copy, upgrades it (tables it lacks)."""
    copy = tmp_path / "mlflow.db"
    shutil.copy(old_store.db, copy)
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.tracking import "
                    "MlflowClient; MlflowClient(sys.argv[1]).search_experiments()",
                    f"sqlite:///{copy}"], check=True, capture_output=True, timeout=300)
    assert revision(copy) == envlock_head() != OLD_REVISION
    assert tables(old_store.db) < tables(copy)


COMMANDS = {
    "capture": ("capture", "--python", "{python}", "--project", "{root}", "--run-id", "{run}",
                "--no-build"),
    "lineage": ("lineage", "{run}"),
    "show": ("show", "{run}"),
    "diff": ("diff", "{run}", "{run}"),
    "replay": ("replay", "{run}"),
    "verify": ("verify", "{run}"),
    "export": ("export", "{run}", "--output", "{root}/../run.tar"),
    "sbom": ("sbom", "{run}"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_the_old_store_and_leaves_it_as_it_was(old_store, command):
    before = old_store.state()
    args = [a.format(python=old_store.python, root=old_store.root, run=old_store.run_id)
            for a in COMMANDS[command]]
    result = run_envlock(*args, cwd=old_store.root,
                         env={"MLFLOW_TRACKING_URI": old_store.uri})
    assert old_store.state() == before, f"envlock {command} changed the store"
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envlock: error: tracking store "), lines
    line = lines[0]
    assert f"has the schema of MLflow 3.10.0 to {OLD_MLFLOW} (alembic revision " \
           f"{OLD_REVISION})" in line
    assert f"pip install 'mlflow-skinny=={OLD_MLFLOW}'" in line
    assert f"mlflow db upgrade {old_store.uri}" in line
    assert not (old_store.root.parent / "run.tar").exists()


def test_the_tracking_uri_from_the_projects_config_is_checked_too(old_store, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.envlock]\ntracking_uri = "{old_store.uri}"\n')
    before = old_store.state()
    env = {"MLFLOW_TRACKING_URI": ""}
    result = run_envlock("lineage", old_store.run_id, cwd=project, env=env)
    assert old_store.state() == before
    assert result.returncode == 2 and f"alembic revision {OLD_REVISION}" in result.stderr


def test_the_named_fix_works_envlock_beside_the_stores_mlflow(old_store):
    """The hint's install: envlock in an environment with the store's MLflow reads it,
    and still leaves it as it was."""
    pip(old_store.python, "install", "-e", str(ROOT))
    before = old_store.state()
    result = subprocess.run([str(old_store.python), "-m", "envlock", "lineage",
                             old_store.run_id], cwd=old_store.root, capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, "MLFLOW_TRACKING_URI": old_store.uri})
    assert result.returncode == 0, result.stderr
    assert f"run {old_store.run_id}" in result.stdout and "not captured" in result.stdout
    assert old_store.state() == before


def test_after_the_users_own_upgrade_envlock_opens_the_store(old_store, tmp_path):
    """The other fix: `mlflow db upgrade` (the test venv's MLflow is envlock's)."""
    project = tmp_path / "upgraded"
    shutil.copytree(old_store.root, project, ignore=shutil.ignore_patterns("venv"))
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    subprocess.run([str(mlflow_cli), "db", "upgrade", uri], check=True, capture_output=True,
                   timeout=300)
    assert revision(project / "mlflow.db") == envlock_head()
    result = run_envlock("lineage", old_store.run_id, cwd=project,
                         env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    assert f"run {old_store.run_id}" in result.stdout


def test_a_store_at_envlocks_head_works_as_before_and_keeps_its_revision(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=True)
    run_id = done.stdout.strip().splitlines()[-1]
    db = tmp_path / "mlflow.db"
    assert revision(db) == envlock_head()
    uri = f"sqlite:///{db}"
    lineage = run_envlock("lineage", run_id, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert lineage.returncode == 0 and f"run {run_id}" in lineage.stdout, lineage.stderr
    show = run_envlock("show", run_id, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert show.returncode == 2 and f"run {run_id} has no envlock lock" in show.stderr
    assert revision(db) == envlock_head()
