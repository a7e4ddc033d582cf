"""Verdicts on a real autologged search through the real engine, registry and MLflow
(full `mlflow` in the image): its wall-clock metrics are shown but not gated, so it
reproduces with no --metric; --strict fails and names them; a training curve whose
history parts from the original's is named at that step; child runs' statuses are
compared."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import Experiment, captured_search, strict_differences

#: what scikit-learn's search logs per candidate that is wall clock
TIMING = {"mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"}


@pytest.fixture(scope="module")
def search(tmp_path_factory, infra, created_images, search_venv):
    """tests/experiments/search_history.py trained on the host and captured."""
    return captured_search(tmp_path_factory.mktemp("verdicts"), "search_history.py",
                           search_venv, infra, created_images)

def latest_record(exp: Experiment, run_id: str, where) -> dict:
    """envlock/replay.json of the newest replay of ``run_id`` (its JSON comparison)."""
    client = MlflowClient(exp.store)
    replay_id = next(r.info.run_id for r in client.search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'",
        order_by=["attributes.start_time DESC"]))
    path = client.download_artifacts(replay_id, "envlock/replay.json", str(where))
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def junit_cases(path) -> dict[str, str]:
    """Each test case's outcome: ok, failure or skipped."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        out[case.get("name")] = ("failure" if case.find("failure") is not None else
                                 "skipped" if case.find("skipped") is not None else "ok")
    return out


def test_a_search_reproduces_with_no_metric_flag_its_timings_shown_not_gated(search,
                                                                              tmp_path):
    exp, run_id = search
    verified = exp.envlock("verify", run_id, "--junit", str(tmp_path / "j.xml"),
                           "--markdown", str(tmp_path / "m.md"))
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    text = verified.stdout
    assert text.startswith("REPRODUCED") and "not gated (time, throughput or the machine" in text
    for name in TIMING:
        assert f"{name} " in text
    assert "child runs: 3 in the original, 3 in the replay" in text
    cases = junit_cases(tmp_path / "j.xml")
    assert {n for n, state in cases.items() if state == "skipped"} == {
        f"metric {name} (not gated)" for name in TIMING}
    assert "failure" not in cases.values()
    assert cases["metric loss"] == "ok" and cases["metric best_cv_score"] == "ok"
    assert "Not gated (time, throughput or the machine" in (tmp_path / "m.md").read_text()
    # what the replay run records: the curve compared point by point, the children's status
    record = latest_record(exp, run_id, tmp_path)
    assert record["verdict"] == "reproduced"
    comparison = record["comparison"]
    loss = next(m for m in comparison["metrics"] if m["name"] == "loss")
    assert loss["history"] == {"points": [20, 20], "first_divergence": None}
    assert [r["status"] for r in comparison["runs"]] == [
        {"original": "FINISHED", "replay": "FINISHED"}] * 3
    assert {u["name"]: u["runs"] for u in comparison["ungated"]} == dict.fromkeys(TIMING, 3)


def test_strict_fails_and_names_the_timing_metrics_that_differ(search, tmp_path):
    exp, run_id = search
    verified = exp.envlock("verify", run_id, "--strict", "--junit", str(tmp_path / "j.xml"))
    named = strict_differences(verified)
    assert "mean_fit_time" in named and named <= TIMING, named  # wall clock, nothing else
    cases = junit_cases(tmp_path / "j.xml")
    assert "skipped" not in cases.values()
    failed = [n for n, state in cases.items() if state == "failure"]
    assert failed and all(n.startswith("run ") for n in failed), failed
    assert cases["metric loss"] == "ok"


def test_a_history_that_parts_is_named_at_its_first_step(search, tmp_path):
    exp, run_id = search
    replayed = exp.envlock("replay", run_id, "--env", "DRIFT_AT=7")
    assert replayed.returncode == 0, replayed.stderr[-3000:]  # the experiment itself ran
    assert "history of loss (root): first differs at step 7: original" in replayed.stdout
    assert "NOT REPRODUCED" in replayed.stdout
    assert "DRIFT_AT: original not recorded, replay 7" in replayed.stdout  # explained
    record = latest_record(exp, run_id, tmp_path)
    comparison = record["comparison"]
    assert record["verdict"] == "not reproduced" and comparison["reproduced"] is False
    loss = next(m for m in comparison["metrics"] if m["name"] == "loss")
    assert loss["ok"] is False and loss["history"]["points"] == [20, 20]
    first = loss["history"]["first_divergence"]
    assert first["step"] == 7 and first["original"] != first["replay"], first
    assert "loss" in comparison["differing"]
    assert all(r["ok"] for r in comparison["runs"])  # the search itself reproduced
