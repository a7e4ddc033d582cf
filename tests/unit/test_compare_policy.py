"""The metric policy: metrics of time, throughput or the machine are shown but not gated
(by documented name rules), configurable, and ``--strict`` gates everything; the text,
JSON, JUnit and Markdown renderings agree on it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from envlock import config
from envlock.cli.render import comparison_table
from envlock.model.compare import MetricPolicy, Tolerance, compare, compare_tree
from envlock.model.report import Case, junit, verify_cases, verify_markdown
from envlock.model.runtree import RunNode

#: Names real tools log that measure time, throughput or the machine.
TIMING = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time",  # sklearn
          "train_runtime", "train_samples_per_second", "train_steps_per_second",  # HF
          "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
          "train_mem_cpu_alloc_delta",  # HF with skip_memory_metrics=False
          "system/cpu_utilization_percentage", "system/gpu_0_memory_usage_megabytes",
          "epoch_duration_s", "Throughput", "step_latency_ms", "fit_time")
#: Names that measure the model: always gated by default.
MODEL = ("loss", "accuracy", "mean_test_score", "std_test_score", "rank_test_score",
         "best_cv_score", "train_loss", "eval_loss", "epoch", "total_flos", "val/acc",
         "training_roc_auc", "learning_rate", "timestep_reward")


@pytest.mark.parametrize("name", TIMING)
def test_time_throughput_and_machine_metrics_are_not_gated_by_default(name):
    rule = MetricPolicy().ungated_by(name)
    assert rule is not None and ":" in rule  # the pattern and what it measures


@pytest.mark.parametrize("name", MODEL)
def test_model_metrics_gate(name):
    assert MetricPolicy().ungated_by(name) is None


def test_strict_gated_named_and_tolerated_metrics_gate_and_config_patterns_ungate():
    assert MetricPolicy(strict=True).ungated_by("train_runtime") is None
    assert MetricPolicy(gated=("train_*",)).ungated_by("train_runtime") is None
    assert MetricPolicy(metrics=("mean_fit_time",)).ungated_by("mean_fit_time") is None
    own = MetricPolicy(per_metric={"eval_runtime": Tolerance(relative=0.5)})
    assert own.ungated_by("eval_runtime") is None
    extra = MetricPolicy(ungated=("grad_norm*",))
    assert extra.ungated_by("grad_norm_l2") == "grad_norm* (ungated_metrics)"
    assert extra.ungated_by("loss") is None
    # gated_metrics wins over ungated_metrics; patterns ignore case
    assert MetricPolicy(ungated=("LOSS",), gated=("loss",)).ungated_by("Loss") is None
    assert MetricPolicy(ungated=("LOSS",)).ungated_by("loss") is not None


def test_an_ungated_difference_is_shown_but_does_not_fail():
    original = {"accuracy": 0.9, "train_runtime": 12.5, "train_samples_per_second": 80.0}
    replay = {"accuracy": 0.9, "train_runtime": 11.0, "train_samples_per_second": 91.0}
    result = compare(original, replay)
    assert result.reproduced
    rows = {r.name: r for r in result.rows}
    assert rows["accuracy"].gated and not rows["train_runtime"].gated
    assert not rows["train_runtime"].ok and rows["train_runtime"].passes
    strict = compare(original, replay, MetricPolicy(strict=True))
    assert not strict.reproduced
    assert strict.differing() == {"train_runtime": 1, "train_samples_per_second": 1}
    # a gated difference still fails by default
    assert not compare(original, {**replay, "accuracy": 0.8}).reproduced


def test_only_ungated_metrics_compare_nothing():
    assert not compare({"train_runtime": 1.0}, {"train_runtime": 1.0}).reproduced
    assert compare({"train_runtime": 1.0}, {"train_runtime": 1.0},
                   MetricPolicy(strict=True)).reproduced


def search_trees(fit_times: tuple[float, float]) -> tuple[RunNode, RunNode]:
    """A grid search of two candidates: scores equal, fit times wall clock."""
    def tree(run_id: str, names: tuple[str, str], fit: float) -> RunNode:
        kids = tuple(RunNode(f"{run_id}{i}", names[i], {"C": c},
                             {"mean_test_score": 0.8 + i / 10, "mean_fit_time": fit + i,
                              "std_fit_time": fit / 10}, i, status="FINISHED")
                     for i, c in enumerate(("0.1", "1.0")))
        return RunNode(run_id, "grid", {"cv": "3"}, {"best_cv_score": 0.9}, 0, kids)

    return (tree("o", ("bold-fox-12", "calm-owl-3"), fit_times[0]),
            tree("r", ("sly-cat-640", "odd-ant-7"), fit_times[1]))


def test_a_search_whose_fit_times_differ_reproduces_and_strict_names_them():
    original, replay = search_trees((0.01, 0.03))
    result = compare_tree(original, replay)
    assert result.reproduced, result.to_dict()
    assert [(u.name, u.runs, u.differ) for u in result.ungated()] == [
        ("mean_fit_time", 2, 2), ("std_fit_time", 2, 2)]
    text = comparison_table(result)
    assert "not gated (time, throughput or the machine" in text
    assert "mean_fit_time" in text and "2/2 runs" in text and "*_time: wall-clock time" in text
    assert text.splitlines()[-1].startswith("REPRODUCED")
    strict = compare_tree(original, replay, MetricPolicy(strict=True))
    assert not strict.reproduced
    assert strict.differing() == {"mean_fit_time": 2, "std_fit_time": 2}
    text = comparison_table(strict)
    assert "differ: mean_fit_time (2 runs), std_fit_time (2 runs)" in text
    assert "--strict: every metric gates" in text.splitlines()[-1]
    assert "not gated" not in text


def test_json_junit_and_markdown_agree_on_the_policy():
    original, replay = search_trees((0.01, 0.03))
    result = compare_tree(original, replay)
    data = result.to_dict()
    assert data["reproduced"] is True and data["differing"] == {}
    assert {u["name"]: u["differ"] for u in data["ungated"]} == {"mean_fit_time": 2,
                                                                 "std_fit_time": 2}
    child = data["runs"][0]["metrics"]
    assert {m["name"]: m["gated"] for m in child} == {
        "mean_fit_time": False, "mean_test_score": True, "std_fit_time": False}
    assert data["policy"]["strict"] is False and "*_time" in data["policy"]["builtin_ungated"]
    xml = junit("envlock.verify", verify_cases(Case("replay of o", True, "exit 0"), result))
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "2")
    skipped = {c.get("name"): c.find("skipped").get("message")  # type: ignore[union-attr]
               for c in suite.iter("testcase") if c.find("skipped") is not None}
    assert set(skipped) == {"metric mean_fit_time (not gated)",
                            "metric std_fit_time (not gated)"}
    assert "differs in 2 of 2 run(s)" in skipped["metric mean_fit_time (not gated)"]
    text = verify_markdown("o", True, {}, result)
    assert "Not gated (time, throughput or the machine; `--strict` gates them)" in text
    assert "| mean_fit_time | - | - | 2/2 runs | `*_time: wall-clock time` |" in text
    strict = compare_tree(original, replay, MetricPolicy(strict=True))
    xml = junit("envlock.verify", verify_cases(Case("replay of o", True, "exit 0"), strict))
    failed = [c.get("name") for c in ET.fromstring(xml).iter("testcase")
              if c.find("failure") is not None]
    assert failed == ["run bold-fox-12 (o0)", "run calm-owl-3 (o1)"]
    assert strict.to_dict()["ungated"] == []


def test_the_config_builds_the_policy(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.envlock]\ntolerance = "1e-6"\nungated-metrics = ["grad_norm*"]\n'
        'gated_metrics = ["eval_runtime"]\n[tool.envlock.tolerances]\nloss = "1%"\n')
    monkeypatch.chdir(tmp_path)
    cfg = config.load()
    policy = cfg.metric_policy(None, ["acc"], strict=False)
    assert policy == MetricPolicy(Tolerance(absolute=1e-6), {"loss": Tolerance(relative=0.01)},
                                  ("acc",), ("grad_norm*",), ("eval_runtime",), False)
    assert policy.ungated_by("eval_runtime") is None
    assert policy.ungated_by("train_runtime") is not None
    assert policy.ungated_by("grad_norm") is not None
    assert cfg.metric_policy("0.5%", strict=True).tolerance == Tolerance(relative=0.005)
    (tmp_path / "pyproject.toml").write_text('[tool.envlock]\nungated_metrics = [3]\n')
    with pytest.raises(config.ConfigError, match="ungated_metrics must be a list of strings"):
        config.load()
