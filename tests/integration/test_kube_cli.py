"""``envlock replay --on kubernetes`` against a real MLflow store (SQLite in tmp_path).

No cluster can run here: these tests cover what happens before one is needed — the
--dry-run manifest and the refusals — and that nothing is written to the store then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from envlock.errors import EnvlockError
from envlock.model import kubejob, lockfile
from envlock.operations import kube
from tests.conftest import run_envlock
from tests.factories import make_lock

IMAGE = "registry.example.com/team/proj@sha256:" + "cd" * 32


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def captured(tmp_path, store) -> str:
    """A run as ``envlock capture`` leaves it: lockfile artifact, digest and image tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    run = client.create_run("0", run_name="train")
    client.log_metric(run.info.run_id, "loss", 0.25)
    client.set_terminated(run.info.run_id)
    lock = make_lock()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    lockfile.write(lock, artifacts / "envlock.lock.yaml")
    client.log_artifacts(run.info.run_id, str(artifacts), "envlock")
    client.set_tag(run.info.run_id, "envlock.lock_digest", lock.lock_digest)
    client.set_tag(run.info.run_id, "envlock.image", IMAGE)
    return str(run.info.run_id)


def run_count(store: str) -> int:
    from mlflow.tracking import MlflowClient

    return len(MlflowClient(store).search_runs(["0"]))


def replay(tmp_path: Path, store: str, *args: str):
    return run_envlock("replay", *args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store})


def test_dry_run_prints_the_job_and_writes_nothing(tmp_path, store, captured):
    result = replay(tmp_path, store, captured, "--on", "kubernetes", "--dry-run",
                    "--namespace", "ml", "--node-selector", "pool=gpu",
                    "--toleration", "nvidia.com/gpu:NoSchedule", "--env", "SEED=7")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "ml"
    main = manifest["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert main["image"] == IMAGE and env["SEED"] == "7"
    assert env["MLFLOW_TRACKING_URI"] == store
    assert env["MLFLOW_RUN_ID"] == kubejob.DRY_RUN_REPLAY_ID
    assert main["resources"] == {"limits": {"nvidia.com/gpu": "1"}}  # the run had one GPU
    assert manifest["metadata"]["labels"]["envlock.dev/run-id"] == captured
    assert "a pod cannot reach it" in result.stderr  # a SQLite store: said, not fatal
    assert run_count(store) == 1


def test_dry_run_json_carries_the_manifest(tmp_path, store, captured):
    result = replay(tmp_path, store, captured, "--on", "kubernetes", "--dry-run", "--gpus",
                    "none", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)["result"]
    assert payload["job"].startswith(f"default/envlock-replay-{captured[:12]}-")
    assert "resources" not in payload["manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert payload["warnings"] and run_count(store) == 1


def test_secret_env_is_refused_and_never_printed(tmp_path, store, captured):
    result = replay(tmp_path, store, captured, "--on", "kubernetes", "--dry-run",
                    "--env", "HF_TOKEN=hunter2")
    assert result.returncode == 2
    assert "--env-from-secret" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (("--gpus", "all"), "number of GPUs"),
    (("--toleration", "gpu"), "KEY=VALUE:EFFECT"),
    (("--mount", "/a:/b"), "--mount works only with --on local"),
])
def test_bad_kubernetes_options_exit_2(tmp_path, store, captured, args, message):
    result = replay(tmp_path, store, captured, "--on", "kubernetes", "--dry-run", *args)
    assert result.returncode == 2 and message in result.stderr


def test_dry_run_needs_kubernetes(tmp_path, store, captured):
    result = replay(tmp_path, store, captured, "--dry-run")
    assert result.returncode == 2 and "--dry-run works only with --on kubernetes" in \
        result.stderr


def test_a_local_store_is_refused_before_anything_is_created(tmp_path, store, captured):
    result = replay(tmp_path, store, captured, "--on", "kubernetes")
    assert result.returncode == 2 and "a pod cannot reach it" in result.stderr
    assert run_count(store) == 1


def test_no_cluster_creates_no_replay_run(tmp_path, store, captured, monkeypatch):
    """The order of a real submission: the cluster config is loaded before the replay run
    is created. The tracker's URI is made to look remote so that the (SQLite) store gets
    past the reachability check; nothing here can reach a cluster."""
    from envlock.adapters.tracking import Tracker

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing" / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    tracker = Tracker(store)
    tracker.uri = "https://mlflow.example.com"
    from envlock.config import Config
    from envlock.operations import replayplan

    spec, context = replayplan.kubernetes(replayplan.ReplayRequest(captured), tracker=tracker,
                                          config=Config())
    with pytest.raises(EnvlockError, match="no Kubernetes cluster configured"):
        kube.replay_on_kubernetes(spec, context, tracker=tracker, options=kube.KubeOptions())
    assert run_count(store) == 1


def test_a_sweep_runs_only_on_kubernetes_and_needs_a_reachable_store(tmp_path, store, captured):
    local = run_envlock("verify", "--experiment", "Default", cwd=tmp_path,
                        env={"MLFLOW_TRACKING_URI": store})
    assert local.returncode == 2 and "--on kubernetes" in local.stderr
    sqlite = run_envlock("verify", "--experiment", "Default", "--on", "kubernetes",
                         cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store})
    assert sqlite.returncode == 2 and "a pod cannot reach it" in sqlite.stderr
    assert run_count(store) == 1
