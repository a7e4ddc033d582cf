"""The run-tree relay on real MLflow stores: a sweep (parent, child runs, histories,
nested artifacts, a figure, a dataset input, an MLflow 3 logged model) logged to a file
store at one path — as the replay container writes it — read from another path on the
host, relayed into the embedded SQLite store and into a real `mlflow server`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.adapters.tracking import Tracker
from envlock.model.compare import compare_artifacts, compare_tree
from tests.conftest import ROOT

SWEEP = ROOT / "tests" / "experiments" / "sweep.py"


def log_sweep(tmp_path: Path, name: str, *args: str) -> tuple[Path, str]:
    """Run the sweep into a file store at ``<tmp>/<name>/container`` (the path the
    container saw), then move the store away (the host's mount point): (host dir, path)."""
    seen = tmp_path / name / "container"
    out = subprocess.run([sys.executable, str(SWEEP), *args], cwd=tmp_path, text=True,
                         capture_output=True, timeout=300,
                         env={**os.environ, "MLFLOW_TRACKING_URI": seen.as_uri(),
                              "MLFLOW_ALLOW_FILE_STORE": "true"})
    assert out.returncode == 0, out.stderr[-2000:]
    host = tmp_path / name / "host"
    shutil.move(seen, host)
    return host, str(seen)


@pytest.fixture(scope="module")
def sweep_stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    return [log_sweep(tmp, f"s{i}", "--children", "4", "--artifact-mb", "1", "--model")
            for i in range(2)]


def points_in(source: tuple[Path, str]) -> int:
    return sum(len(line.splitlines()) for line in
               (p.read_text() for p in source[0].glob("0/*/metrics/*")))


def relay_into(store: str, source: tuple[Path, str], name: str):
    tracker = Tracker(store)
    run_id = tracker.create_run("0", name, {"envlock.replay_of": "test"})
    report = tracker.relay_file_store(source[0], run_id, source[1])
    tracker.finish(run_id, True)
    return tracker, run_id, report


@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_the_whole_tree_arrives_with_its_shape_data_artifacts_and_model(where, tmp_path,
                                                                        sweep_stores,
                                                                        request):
    store = f"sqlite:///{tmp_path}/host.db" if where == "sqlite" else \
        request.getfixturevalue("mlflow_server")
    tracker, run_id, report = relay_into(store, sweep_stores[0], "replay")
    assert report.complete, report.missing
    assert (report.runs, report.models, report.datasets) == (5, 1, 1)
    # every point of the source store (MLflow 3's log_model re-logs the run's metrics
    # linked to the model, so there are more than the script's own 46)
    assert report.metric_points == points_in(sweep_stores[0]) > 46
    tree = tracker.run_tree(run_id)
    assert tree.params == {"candidates": "4", "steps": "10"}
    assert [c.name for c in tree.children] == ["lr=0.05", "lr=0.1", "lr=0.15", "lr=0.2"]
    assert all(c.params["lr"] == c.name[3:] for c in tree.children)
    client = tracker.client
    first = tree.children[0].run_id
    assert [m.step for m in client.get_metric_history(first, "loss")] == list(range(10))
    assert client.get_run(first).data.tags["mlflow.parentRunId"] == run_id
    assert client.get_run(first).info.status == "FINISHED"
    assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["toy"]
    digests = tracker.artifact_digests(run_id)
    assert {"figures/loss.png", "results/all.json", "checkpoints/weights.bin",
            "models/model/MLmodel", "models/model/python_model.pkl"} <= set(digests)
    assert "candidate/0/summary.json" in tracker.artifact_digests(first)
    (model,) = [m for m in client.search_logged_models(experiment_ids=["0"])
                if m.source_run_id == run_id]
    assert model.name == "model" and str(model.status.name) == "READY"
    # a mapping for every run, container id -> host id
    assert len(report.mapping) == 5 and report.mapping[next(iter(report.mapping))][0] == run_id


def test_two_replays_of_a_deterministic_sweep_compare_identical(tmp_path, sweep_stores):
    store = f"sqlite:///{tmp_path}/host.db"
    tracker, first, _ = relay_into(store, sweep_stores[0], "first")
    _, second, _ = relay_into(store, sweep_stores[1], "second")
    comparison = compare_tree(tracker.run_tree(first), tracker.run_tree(second))
    assert comparison.reproduced, comparison.to_dict()
    assert {r.rule for r in comparison.runs} == {"name+params"}
    pairs = [("", first, second)] + [(r.name, r.original_id, r.replay_id)
                                     for r in comparison.runs]
    rows = compare_artifacts((n, tracker.artifact_digests(a), tracker.artifact_digests(b))
                             for n, a, b in pairs)
    # MLflow writes the model's own id and creation time into MLmodel, and cloudpickle a
    # random tracker id into a by-value class: those honestly differ; all else is the same
    differs = {r.path for r in rows if not r.ok}
    assert differs == {"models/model/MLmodel", "models/model/python_model.pkl"}
    assert {r.status for r in rows if r.path not in differs} == {"identical"}
    assert len(rows) > 10


def test_what_cannot_be_carried_is_listed_never_dropped(tmp_path):
    """An experiment whose artifacts live outside the mounted store (its own artifact
    location): the relay says so, and the report is incomplete."""
    script = tmp_path / "elsewhere.py"
    script.write_text(
        "import mlflow, sys\n"
        "exp = mlflow.create_experiment('own', artifact_location=sys.argv[1])\n"
        "with mlflow.start_run(experiment_id=exp):\n"
        "    mlflow.log_metric('m', 1.0)\n"
        "    mlflow.log_text('hello', 'note.txt')\n")
    seen = tmp_path / "container"
    subprocess.run([sys.executable, str(script), (tmp_path / "outside").as_uri()], check=True,
                   capture_output=True, timeout=120,
                   env={**os.environ, "MLFLOW_TRACKING_URI": seen.as_uri(),
                        "MLFLOW_ALLOW_FILE_STORE": "true"})
    host = tmp_path / "host"
    shutil.move(seen, host)
    _tracker, _run_id, report = relay_into(f"sqlite:///{tmp_path}/h.db", (host, str(seen)), "r")
    assert not report.complete
    assert report.runs == 1 and report.metric_points == 1
    assert any("outside the replay's store" in m for m in report.missing), report.missing
