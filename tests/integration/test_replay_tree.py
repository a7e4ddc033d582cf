"""Replays of experiments shaped like everyday ones, through the real engine, registry and
MLflow: an autologged grid search with full `mlflow` in the image (a parent, one child
run per candidate, files, figures, logged models), and a sweep in an image holding
MLflow 2.x replayed into today's 3.x store."""

from __future__ import annotations

import json
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, init_repo
from tests.integration.conftest import Experiment, captured_search, system_venv

REPO = f"tests/tree-{uuid.uuid4().hex[:8]}"
EXPERIMENTS = ROOT / "tests" / "experiments"
#: deterministic metrics of the search (the children's fit and score times are wall clock)
SEARCH_METRICS = ("best_cv_score", "training_accuracy_score", "training_log_loss",
                  "training_roc_auc", "mean_test_score", "std_test_score", "rank_test_score")


def make(tmp_path, name: str, script: str, *packages: str) -> Experiment:
    root = init_repo(tmp_path / name, {
        "train.py": (EXPERIMENTS / script).read_text(),
        ".gitignore": "mlflow.db\n.envlock/\n.venv/\nmlruns/\n"})
    return Experiment(root=root, python=system_venv(root / ".venv", *packages),
                      store=f"sqlite:///{tmp_path}/{name}.db")


def children(store: str, run_id: str) -> list:
    client = MlflowClient(store)
    run = client.get_run(run_id)
    return client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")


@pytest.fixture(scope="module")
def search(tmp_path_factory, infra, created_images, search_venv):
    """The search, trained on the host and captured (`envlock capture` with no run id:
    it must pick the search's parent, not the last candidate's child run)."""
    exp, run_id = captured_search(tmp_path_factory.mktemp("search"), "search_autolog.py",
                                  search_venv, infra, created_images)
    run = MlflowClient(exp.store).get_run(run_id)
    assert run.info.run_name == "grid" and "mlflow.parentRunId" not in run.data.tags
    return exp, run_id


def test_an_autologged_search_replays_as_a_tree(search):
    exp, run_id = search
    metric_flags = [a for m in SEARCH_METRICS for a in ("--metric", m)]
    replayed = exp.envlock("replay", run_id, *metric_flags, "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    result = json.loads(replayed.stdout)["result"]
    relay, comparison = result["relay"], result["comparison"]
    assert relay["complete"] and relay["runs"] == 5, relay
    assert relay["models"] >= 1 and relay["datasets"] >= 4 and relay["artifacts"] >= 7
    assert comparison["reproduced"] is True, comparison
    assert len(comparison["runs"]) == 4
    assert {r["matched_by"] for r in comparison["runs"]} == {"params"}  # random run names
    assert all(r["ok"] and r["metrics"] for r in comparison["runs"])
    original_kids = {r.info.run_id: r.data.params["C"] for r in children(exp.store, run_id)}
    replay_id = result["replay_run_id"]
    replay_kids = children(exp.store, replay_id)
    assert sorted(r.data.params["C"] for r in replay_kids) == sorted(original_kids.values())
    for kid in replay_kids:  # each replay child names its original
        assert original_kids[kid.data.tags["envlock.replay_of"]] == kid.data.params["C"]
        assert kid.data.tags["envlock.replay_root"] == replay_id
    replay = MlflowClient(exp.store).get_run(replay_id)
    assert replay.data.tags["envlock.verdict"] == "reproduced"
    assert replay.data.tags["envlock.replay_runs"] == "5"
    lineage = json.loads(exp.envlock("lineage", run_id, "--json").stdout)["result"]
    mapped = {c["original_run_id"] for c in lineage["replays"][-1]["runs"]}
    assert mapped == set(original_kids)


def test_artifacts_are_compared_by_hash_and_differences_fail_the_gate(search, tmp_path):
    exp, run_id = search
    metric_flags = [a for m in SEARCH_METRICS for a in ("--metric", m)]
    verified = exp.envlock("verify", run_id, *metric_flags, "--compare-artifacts",
                           "--junit", str(tmp_path / "j.xml"), "--json")
    assert verified.returncode == 1, verified.stderr[-3000:]  # cv_results.csv has fit times
    result = json.loads(verified.stdout)["result"]
    rows = result["comparison"]["artifacts"]
    status = {(a["run"], a["path"]): a["status"] for a in rows}
    assert result["relay"]["complete"] and "extra" not in status.values(), status
    # Every status is true of the stores: what is "missing" is really absent from the replay
    # run. (Autologging inside the container can skip its post-fit step, silently with
    # silent=True: once in CI it logged no cv_results.csv, HTML or model, and envlock said
    # so, per file, instead of passing.)
    replay_paths = {f.path for f in
                    MlflowClient(exp.store).list_artifacts(result["replay_run_id"])}
    for (run, path), state in status.items():
        if not run and not path.startswith("models/") and "/" not in path:
            assert (state == "missing") == (path not in replay_paths), (path, state)
    # The hand-logged files are always there: identical.
    for same in ("notes/summary.txt", "figures/scores.png"):
        assert status[("", same)] == "identical", (same, status)
    if status[("", "cv_results.csv")] != "missing":  # autologging finished its post-fit step
        assert status[("", "cv_results.csv")] == "differs"  # mean_fit_time is wall clock
        why = {(a["run"], a["path"]): a["reason"] for a in rows}[("", "cv_results.csv")]
        assert why.startswith("line 2 differs: original "), why  # the first candidate
        assert status[("", "training_confusion_matrix.png")] == "identical"
        assert any(path.startswith("models/") and path.endswith("model.pkl")
                   for _run, path in status), status
    cases = {c.get("name"): c.find("failure") is None
             for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert cases["artifact cv_results.csv"] is False and cases["artifact notes/summary.txt"]
    assert cases["artifact figures/scores.png"] is True
    assert sum(1 for name in cases if name.startswith("run ")) == 4


def test_an_mlflow_2_image_replays_its_tree_into_a_3x_store(tmp_path, infra, created_images):
    """The trap: the image's MLflow (2.x, skinny) is older than the store's (3.x). The
    sweep's runs, histories and artifacts are relayed into today's store, and compare
    identical file by file."""
    import mlflow as host_mlflow

    from envlock.adapters.tracking import Tracker

    exp = make(tmp_path, "old", "sweep.py", "mlflow-skinny==2.17.2")
    old = subprocess.run([str(exp.python), "-c", "import mlflow; print(mlflow.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert old.startswith("2.") and host_mlflow.__version__.startswith("3.")
    # The original, months ago: the old client logged to its own file store; today's
    # store holds that run tree (relayed the same way envlock relays replays).
    private = tmp_path / "then"
    subprocess.run([str(exp.python), "train.py", "--children", "3"], cwd=exp.root,
                   check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": private.as_uri()})
    tracker = Tracker(exp.store)
    run_id = tracker.create_run("0", "original", {})
    assert tracker.relay_file_store(private, run_id).complete
    tracker.finish(run_id, True)
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{REPO}-old",
                command="python train.py --children 3")
    replayed = exp.envlock("replay", run_id, "--compare-artifacts", "--json")
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    result = json.loads(replayed.stdout)["result"]
    assert result["comparison"]["reproduced"] is True, result["comparison"]
    assert [r["name"] for r in result["comparison"]["runs"]] == ["lr=0.05", "lr=0.1", "lr=0.15"]
    artifacts = result["comparison"]["artifacts"]
    assert {a["status"] for a in artifacts} == {"identical"}
    assert {"figures/loss.png", "results/all.json", "candidate/0/summary.json"} <= {
        a["path"] for a in artifacts}
