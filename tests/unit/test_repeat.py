"""Noise versus drift over N replays (``--repeat N``): each metric classified equal,
drift, noise (with its spread and whether the original lies within it) or missing, and
the run as a whole deterministic, nondeterministic or drift."""

from __future__ import annotations

import math
from types import SimpleNamespace

from envlock.model.compare import MetricPolicy, Tolerance, compare_tree
from envlock.model.repeat import (
    DETERMINISTIC,
    DRIFT,
    DRIFTS,
    EQUAL,
    MISSING,
    NOISE,
    NONDETERMINISTIC,
    classify,
    envelope,
    t_quantile,
)
from envlock.model.runtree import RunNode
from tests.fakes import FakeTracker


def tree(run_id, loss, acc=0.9, fit_time=1.0, children=(), status="FINISHED", params=None):
    history = [(step, loss + (10 - step) * 0.1) for step in range(10)] + [(10, loss)]
    return RunNode(run_id, "train", params or {"lr": "0.1"},
                   {"loss": loss, "acc": acc, "mean_fit_time": fit_time}, 0, tuple(children),
                   status=status, histories={"loss": history})


def child(run_id, score, status="FINISHED", name="cand"):
    return RunNode(run_id, name, {"C": "1"}, {"score": score}, 0, status=status)


def repeat_of(original, replays, policy=None):
    policy = policy or MetricPolicy()
    return classify(original, [(compare_tree(original, r, policy), r) for r in replays], policy)


def test_replays_equal_to_each_other_and_the_original_are_deterministic():
    original = tree("o", 0.5, children=[child("oc", 0.7)])
    found = repeat_of(original, [tree(f"r{i}", 0.5, fit_time=1 + i,
                                      children=[child(f"rc{i}", 0.7)]) for i in range(3)])
    assert found.kind == DETERMINISTIC and found.passes and not found.problems
    kinds = {(s.run, s.name): s.kind for s in found.spreads}
    assert kinds == {("", "loss"): EQUAL, ("", "acc"): EQUAL, ("cand", "score"): EQUAL,
                     ("", "mean_fit_time"): NOISE}  # wall clock: shown, never gated
    timing = next(s for s in found.spreads if s.name == "mean_fit_time")
    assert not timing.gated and (timing.low, timing.high) == (1.0, 3.0)
    assert found.verdict == "deterministic: 3 replays equal to each other and the original"


def test_replays_that_agree_with_each_other_but_not_the_original_are_drift():
    original = tree("o", 0.5)
    found = repeat_of(original, [tree(f"r{i}", 0.55) for i in range(3)])
    assert found.kind == DRIFT and not found.passes
    loss = next(s for s in found.spreads if s.name == "loss")
    assert loss.kind == DRIFTS and loss.values == (0.55, 0.55, 0.55)
    assert found.verdict == ("drift: 3 replays agree with each other but not with the "
                             "original (loss)")
    assert "every replay gives 0.55, the original 0.5" in loss.describe()


def test_noise_with_the_original_inside_the_spread_passes():
    original = tree("o", 0.50)
    found = repeat_of(original, [tree("a", 0.49), tree("b", 0.52), tree("c", 0.505)])
    assert found.kind == NONDETERMINISTIC and found.passes
    loss = next(s for s in found.spreads if s.name == "loss")
    assert loss.kind == NOISE and loss.within and (loss.low, loss.high) == (0.49, 0.52)
    assert math.isclose(loss.mean or 0, (0.49 + 0.52 + 0.505) / 3)
    assert found.verdict == ("nondeterministic: the original lies within the spread of 3 "
                             "replays (1 metric(s) vary)")
    # the interval of one more draw: mean ± t(0.995, 2)·s·√(1+1/3)
    low, high = loss.interval or (0, 0)
    half = 9.925 * (loss.stdev or 0) * math.sqrt(4 / 3)
    assert math.isclose(high - low, 2 * half)


def test_noise_with_the_original_far_outside_fails_and_names_it():
    original = tree("o", 0.90)
    found = repeat_of(original, [tree("a", 0.49), tree("b", 0.52), tree("c", 0.505)])
    assert found.kind == NONDETERMINISTIC and not found.passes
    assert [s.name for s in found.failing()] == ["loss"]
    assert "the original lies OUTSIDE the spread of 3 replays for loss" in found.verdict
    loss = found.failing()[0]
    assert "lies OUTSIDE the spread" in loss.describe()
    assert loss.to_dict()["within"] is False


def test_an_original_just_outside_min_max_but_inside_the_interval_passes():
    original = tree("o", 0.53)
    found = repeat_of(original, [tree("a", 0.49), tree("b", 0.52), tree("c", 0.505)])
    loss = next(s for s in found.spreads if s.name == "loss")
    assert loss.kind == NOISE and loss.within and found.passes


def test_the_tolerance_decides_what_varies():
    original = tree("o", 0.500)
    replays = [tree("a", 0.5001), tree("b", 0.5002)]
    loose = MetricPolicy(tolerance=Tolerance(absolute=1e-3))
    assert repeat_of(original, replays, loose).kind == DETERMINISTIC
    assert repeat_of(original, replays).kind == NONDETERMINISTIC


def test_one_replay_cannot_place_noise_and_a_missing_metric_fails():
    original = tree("o", 0.5)
    single = repeat_of(original, [tree("a", 0.6)])
    assert single.kind == DRIFT  # one replay agrees with itself
    gone = RunNode("g", "train", {"lr": "0.1"}, {"acc": 0.9, "mean_fit_time": 1.0}, 0,
                   status="FINISHED")
    found = repeat_of(original, [tree("a", 0.5), gone])
    assert next(s for s in found.spreads if s.name == "loss").kind == MISSING
    assert not found.passes


def test_child_status_params_and_unmatched_runs_are_problems():
    original = tree("o", 0.5, children=[child("oc", 0.7)])
    failed = tree("a", 0.5, children=[child("ac", 0.7, status="FAILED")])
    changed = tree("b", 0.5, children=[child("bc", 0.7)], params={"lr": "0.2"})
    found = repeat_of(original, [failed, changed])
    assert not found.passes and found.kind == DETERMINISTIC
    assert "replay 1: child cand: status FINISHED -> FAILED" in found.problems
    assert "replay 2: param lr '0.1' -> '0.2'" in found.problems


def test_history_leaving_the_replays_band_is_shown():
    replays = [[(0, 1.0), (1, 0.5), (2, 0.3)], [(0, 1.1), (1, 0.6), (2, 0.31)]]
    inside = [(0, 1.05), (1, 0.55), (2, 0.305)]
    assert envelope(inside, replays, Tolerance()) is None
    outside = [(0, 1.05), (1, 0.9), (2, 0.305)]
    found = envelope(outside, replays, Tolerance())
    assert found is not None and (found.step, found.low, found.high) == (1, 0.5, 0.6)
    assert envelope(outside, [*replays, None], Tolerance()) is None


def test_artifacts_differing_among_replays_are_noise_the_same_difference_is_drift():
    from dataclasses import replace

    from envlock.model.compare import ArtifactRow
    from envlock.model.repeat import artifact_spreads

    original = tree("o", 0.5)
    base = [compare_tree(original, tree(f"r{i}", 0.5)) for i in range(2)]
    noisy = [replace(c, artifacts=(ArtifactRow("", "model.pt", "aa", sha),))
             for c, sha in zip(base, ("bb", "cc"), strict=True)]
    [spread] = artifact_spreads([(c, original) for c in noisy])
    assert spread.kind == NOISE and spread.ok
    drifted = [replace(c, artifacts=(ArtifactRow("", "model.pt", "aa", "bb"),)) for c in base]
    found = classify(original, [(c, tree(f"r{i}", 0.5)) for i, c in enumerate(drifted)],
                     MetricPolicy())
    assert found.kind == DRIFT and not found.passes and "model.pt" in found.verdict


def test_t_quantiles():
    assert t_quantile(1) == 63.657 and t_quantile(2) == 9.925 and t_quantile(500) == 2.576


# ------------------------------------------------ the operation on the fake tracker
def noisy_run(tracker, name, final, *, exit_code=0):
    from envlock.model.replayspec import Checks
    from envlock.operations.replay import ReplayResult, conclude

    history = {"loss": [(s, 1.0 / (s + 1)) for s in range(5)] + [(5, final)],
               "epoch_seconds": [(0, 1.0 + final)]}
    run_id = tracker.add_run(name=name, params={"lr": "0.1"}, history=history)
    return run_id, lambda original: ReplayResult(
        original, run_id, "img@sha256:x", exit_code,
        comparison=conclude(tracker, SimpleNamespace(run_id=original, name="train"), run_id,
                            exit_code, Checks(MetricPolicy())))


def test_concluded_classifies_records_on_every_replay_run_and_renders():
    import json

    from envlock.cli.render import repeat_text
    from envlock.model.report import repeat_cases, repeat_markdown
    from envlock.operations.repeat import REPEAT_TAG, concluded

    tracker = FakeTracker()
    original, _ = noisy_run(tracker, "train", 0.50)
    made = [noisy_run(tracker, f"replay {i}", v) for i, v in enumerate((0.49, 0.52, 0.505))]
    result = concluded([make(original) for _id, make in made], tracker, MetricPolicy())
    assert result.passes and result.repeat is not None
    assert result.repeat.kind == NONDETERMINISTIC
    for replay_id, _make in made:
        tags = tracker.runs[replay_id].tags
        assert tags[REPEAT_TAG] == result.repeat.verdict
        assert tags["envlock.verdict"] == "not reproduced"  # on its own, it is not
        record = json.loads(tracker.runs[replay_id].artifacts["envlock/repeat.json"])
        assert record["kind"] == NONDETERMINISTIC and record["passes"] is True
        assert record["replay_run_ids"] == [i for i, _m in made]
    loss = next(m for m in record["metrics"] if m["name"] == "loss")
    assert (loss["min"], loss["max"], loss["within"]) == (0.49, 0.52, True)
    text = repeat_text(result)
    assert "replay 1 of 3: run" in text and "not reproduced on its own" in text
    assert text.splitlines()[-1].startswith("NONDETERMINISTIC: the original lies within")
    assert "1 not gated (time, throughput or the machine), 1 of them vary" in text
    cases = {c.name: c for c in repeat_cases(result)}
    assert cases["metric loss"].ok and "lies within the spread" in cases["metric loss"].detail
    assert cases["metric epoch_seconds (not gated)"].skipped
    assert "nondeterministic" in repeat_markdown(original, result)


def test_a_failed_experiment_fails_the_repeat_even_when_metrics_agree():
    from envlock.operations.repeat import concluded

    tracker = FakeTracker()
    original, _ = noisy_run(tracker, "train", 0.5)
    made = [noisy_run(tracker, "r1", 0.5), noisy_run(tracker, "r2", 0.5, exit_code=3)]
    result = concluded([make(original) for _id, make in made], tracker, MetricPolicy())
    assert result.repeat is not None and result.repeat.kind == DETERMINISTIC
    assert not result.passes and result.exit_code == 3
    assert "replay 2: exit code 3" in result.repeat.problems


def test_repeat_is_checked_before_anything_runs():
    import pytest

    from envlock.errors import UsageError
    from envlock.operations.repeat import check_repeat

    assert check_repeat(3) == 3
    for bad in (0, 51):
        with pytest.raises(UsageError, match="out of range"):
            check_repeat(bad)
    with pytest.raises(UsageError, match="--no-track"):
        check_repeat(2, track=False)
