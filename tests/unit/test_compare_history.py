"""Histories, not only last values: each metric compared step by step, the first step
where original and replay part named; child runs' status, names and count compared; and
the same through ``conclude`` on the fake tracker (what replay and verify record)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from envlock.cli.render import comparison_table
from envlock.model.compare import (
    Divergence,
    MetricPolicy,
    Tolerance,
    compare_tree,
    first_divergence,
    same_name,
)
from envlock.model.replayspec import Checks
from envlock.model.report import Case, verify_cases, verify_markdown
from envlock.model.runtree import RunNode
from envlock.operations.replay import conclude
from tests.fakes import FakeTracker

LOSS = [(step, 1.0 / (step + 1)) for step in range(200)]


def test_equal_histories_have_no_divergence():
    assert first_divergence(LOSS, list(LOSS), Tolerance()) is None
    nan = [(0, math.nan), (1, 0.5)]
    assert first_divergence(nan, list(nan), Tolerance()) is None


def test_the_first_step_beyond_tolerance_is_named_with_its_values():
    drifted = [(s, v + (1e-3 if s >= 37 else 0.0)) for s, v in LOSS]
    found = first_divergence(LOSS, drifted, Tolerance())
    assert found == Divergence(37, LOSS[37][1], LOSS[37][1] + 1e-3)
    assert found is not None and abs(found.delta - 1e-3) < 1e-12  # type: ignore[operator]
    assert first_divergence(LOSS, drifted, Tolerance(absolute=2e-3)) is None


def test_a_missing_or_extra_step_or_a_repeated_step_is_a_divergence():
    assert first_divergence(LOSS, LOSS[:150], Tolerance()) == Divergence(150, LOSS[150][1],
                                                                         None)
    gap = LOSS[:10] + LOSS[11:]
    assert first_divergence(LOSS, gap, Tolerance()) == Divergence(10, LOSS[10][1], None)
    # no step given: every value at step 0, in logging order
    flat, other = [(0, 3.0), (0, 2.0), (0, 1.0)], [(0, 3.0), (0, 2.5), (0, 1.0)]
    assert first_divergence(flat, other, Tolerance()) == Divergence(0, 2.0, 2.5, index=1)
    assert first_divergence(flat, flat[:2], Tolerance()) == Divergence(0, 1.0, None, index=2)


def node(run_id, name="", metrics=None, histories=None, status="FINISHED", children=(),
         params=None, start=0):
    return RunNode(run_id, name, params or {}, metrics or {}, start, tuple(children),
                   status=status, histories=histories or {})


def test_same_last_value_but_a_history_that_parted_is_not_reproduced():
    bumped = [(s, v + 0.5) if s == 120 else (s, v) for s, v in LOSS]
    original = node("o", metrics={"loss": LOSS[-1][1]}, histories={"loss": LOSS})
    replay = node("r", metrics={"loss": LOSS[-1][1]}, histories={"loss": bumped})
    result = compare_tree(original, replay)
    assert not result.reproduced
    [row] = result.rows
    assert row.original == row.replay and row.points == (200, 200)
    assert row.divergence is not None and row.divergence.step == 120
    data = result.to_dict()["metrics"][0]["history"]
    assert data["points"] == [200, 200] and data["first_divergence"]["step"] == 120
    text = comparison_table(result)
    assert "DIFFERS from step 120" in text
    assert "history of loss (root): first differs at step 120: original 0.00826446" in text
    assert "(delta +0.5); 200/200 points" in text


def test_a_child_history_divergence_is_named_in_every_report():
    kid = node("o1", "trial-0", {"val_loss": 0.3}, {"val_loss": [(0, 0.5), (1, 0.4), (2, 0.3)]})
    other = node("r1", "trial-0", {"val_loss": 0.3}, {"val_loss": [(0, 0.5), (1, 0.41),
                                                                   (2, 0.3)]})
    result = compare_tree(node("o", children=[kid]), node("r", children=[other]))
    assert not result.reproduced
    assert [(label, r.name, d.step) for label, r, d in result.divergences()] == [
        ("trial-0", "val_loss", 1)]
    assert "history of val_loss (child trial-0): first differs at step 1" in \
        comparison_table(result)
    [case] = [c for c in verify_cases(Case("replay", True, ""), result)
              if c.name.startswith("run ")]
    assert not case.ok and "val_loss 0.3 -> 0.3 (from step 1)" in case.detail
    assert "history of `val_loss` (child trial-0) first differs at step 1" in \
        verify_markdown("o", False, {}, result)


def test_an_ungated_history_that_parts_does_not_fail():
    original = node("o", "", {"acc": 1.0, "epoch_time": 2.0},
                    {"acc": [(0, 1.0)], "epoch_time": [(0, 1.0), (1, 2.0)]})
    replay = node("r", "", {"acc": 1.0, "epoch_time": 2.0},
                  {"acc": [(0, 1.0)], "epoch_time": [(0, 1.3), (1, 2.0)]})
    result = compare_tree(original, replay)
    assert result.reproduced and result.divergences() == []
    assert not compare_tree(original, replay, MetricPolicy(strict=True)).reproduced


def test_child_status_must_match_failed_in_both_is_fine():
    pruned = node("o2", "1", {"v": 0.2}, status="FAILED")
    original = node("o", children=[node("o1", "0", {"v": 0.1}), pruned])
    both_failed = node("r", children=[node("r1", "0", {"v": 0.1}),
                                      node("r2", "1", {"v": 0.2}, status="FAILED")])
    assert compare_tree(original, both_failed).reproduced
    finished = node("r", children=[node("r1", "0", {"v": 0.1}),
                                   node("r2", "1", {"v": 0.2}, status="FINISHED")])
    result = compare_tree(original, finished)
    assert not result.reproduced
    row = result.runs[1]
    assert row.status == ("FAILED", "FINISHED") and row.problems() == [
        "status FAILED -> FINISHED"]
    assert result.to_dict()["runs"][1]["status"] == {"original": "FAILED",
                                                      "replay": "FINISHED"}
    assert "FAILED -> FINISHED (DIFFERS)" in comparison_table(result)
    assert "**FAILED → FINISHED**" in verify_markdown("o", False, {}, result)


def test_child_names_and_count_are_compared():
    assert same_name("bold-fox-123", "calm-owl-7")  # MLflow made both up
    assert not same_name("lr=0.1", "lr=0.2") and not same_name("bold-fox-1", "lr=0.1")
    original = node("o", children=[node("o1", "fold-0", {"m": 1.0}, params={"k": "1"})])
    renamed = node("r", children=[node("r1", "fold-zero", {"m": 1.0}, params={"k": "1"})])
    result = compare_tree(original, renamed)
    assert not result.reproduced and result.runs[0].problems() == [
        "name 'fold-0' -> 'fold-zero'"]
    extra = node("r", children=[node("r1", "fold-0", {"m": 1.0}, params={"k": "1"}),
                                node("r2", "fold-1", {"m": 1.0}, params={"k": "2"})])
    result = compare_tree(original, extra)
    assert not result.reproduced and result.children == (1, 2)
    assert result.to_dict()["child_runs"] == {"original": 1, "replay": 2}
    assert "child runs: 1 in the original, 2 in the replay" in comparison_table(result)


def search(tracker: FakeTracker, parent_name: str, statuses: list[str],
           drift_at: int | None = None) -> str:
    """An Optuna-like study: a parent and one child run per trial, each with a 50-step
    val_loss history; pruned trials end FAILED."""
    root = tracker.add_run(name=parent_name, metrics={"best_value": 0.1})
    for trial, status in enumerate(statuses):
        points = [(s, 1.0 / (s + 1 + trial)) for s in range(50)]
        if drift_at is not None and trial == 1:
            points = [(s, v * (1.01 if s >= drift_at else 1.0)) for s, v in points]
        tracker.add_run(name=str(trial), params={"lr": str(0.1 * (trial + 1))},
                        status=status, tags={"mlflow.parentRunId": root},
                        history={"val_loss": points, "trial_duration": [(0, 1.0 + trial)]})
    return root


def test_conclude_records_statuses_and_the_first_diverging_step():
    tracker = FakeTracker()
    original = search(tracker, "study", ["FINISHED", "FAILED", "FINISHED"])
    replay = search(tracker, "replay", ["FINISHED", "FAILED", "FINISHED"])
    run = SimpleNamespace(run_id=original, name="study")
    comparison = conclude(tracker, run, replay, 0, Checks(MetricPolicy()))
    assert comparison.reproduced, comparison.to_dict()
    assert tracker.runs[replay].tags["envlock.verdict"] == "reproduced"
    drifted = search(tracker, "replay 2", ["FINISHED", "FAILED", "KILLED"], drift_at=17)
    comparison = conclude(tracker, run, drifted, 0, Checks(MetricPolicy()))
    assert not comparison.reproduced
    assert tracker.runs[drifted].tags["envlock.verdict"] == "not reproduced"
    record = json.loads(tracker.runs[drifted].artifacts["envlock/replay.json"])
    runs = record["comparison"]["runs"]
    loss = runs[1]["metrics"][1]
    assert loss["name"] == "val_loss" and loss["history"]["first_divergence"]["step"] == 17
    assert runs[2]["status"] == {"original": "FINISHED", "replay": "KILLED"}
    assert record["comparison"]["ungated"][0]["name"] == "trial_duration"
