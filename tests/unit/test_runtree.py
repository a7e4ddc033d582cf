"""The run tree: matching a replay's child runs with the original's, and comparing trees."""

from envlock.model.compare import MetricPolicy, Tolerance, compare_artifacts, compare_tree
from envlock.model.runtree import RelayReport, RunNode, build_tree, match_children, match_trees


def node(run_id, name="", params=None, metrics=None, start=0, children=()):
    return RunNode(run_id, name, params or {}, metrics or {}, start, tuple(children))


def test_search_children_with_random_names_match_by_params():
    originals = [node("o1", "bold-fox", {"C": "0.1"}, start=1),
                 node("o2", "calm-owl", {"C": "1.0"}, start=2)]
    replays = [node("r1", "sly-cat", {"C": "1.0"}, start=5),
               node("r2", "odd-ant", {"C": "0.1"}, start=6)]
    pairs = {(m.original.run_id, m.replay.run_id, m.rule) for m in match_children(originals,
                                                                                   replays)}
    assert pairs == {("o1", "r2", "params"), ("o2", "r1", "params")}


def test_name_and_params_first_then_name_then_order():
    originals = [node("a", "fold-0", {"k": "1"}, start=1), node("b", "fold-1", {"k": "2"},
                                                                   start=2),
                 node("c", "eval", {"seed": "0"}, start=3), node("d", "x", start=4)]
    replays = [node("B", "fold-1", {"k": "2"}, start=1), node("C", "eval", {"seed": "1"},
                                                               start=2),
               node("A", "fold-0", {"k": "1"}, start=3), node("D", "y", start=4)]
    rules = {m.original.run_id: (m.replay.run_id, m.rule)
             for m in match_children(originals, replays)}
    assert rules == {"a": ("A", "name+params"), "b": ("B", "name+params"),
                     "c": ("C", "name"), "d": ("D", "order")}


def test_unmatched_children_are_missing_or_extra_with_their_descendants():
    original = node("o", children=[node("o1", "a", start=1),
                                   node("o2", "b", start=2, children=[node("o3", "c")])])
    replay = node("r", children=[node("r1", "a", start=1)])
    rules = [(d, m.rule, (m.original or m.replay).run_id) for d, m in match_trees(original,
                                                                                    replay)]
    assert rules == [(0, "root", "o"), (1, "name+params", "o1"), (1, "missing", "o2"),
                     (2, "missing", "o3")]


def test_build_tree_orders_children_by_start_and_ignores_cycles():
    nodes = {i: node(i, i, start=s) for i, s in (("b", 2), ("a", 1), ("c", 3))}
    tree = build_tree(node("root"), {"a": "root", "b": "root", "c": "a", "root": "c"}, nodes)
    assert [(d, n.run_id) for d, n in tree.walk()] == [(0, "root"), (1, "a"), (2, "c"),
                                                       (1, "b")]
    assert tree.size() == 4


def test_tree_comparison_reports_changed_params_and_child_metrics():
    original = node("o", params={"cv": "3"}, metrics={"best": 0.9},
                    children=[node("o1", "a", {"C": "1"}, {"score": 0.5})])
    same = node("r", params={"cv": "3"}, metrics={"best": 0.9},
                children=[node("r1", "a", {"C": "1"}, {"score": 0.5})])
    result = compare_tree(original, same)
    assert result.reproduced and result.runs[0].replay_id == "r1"
    assert result.verdict == "reproduced"
    changed = node("r", params={"cv": "5"}, metrics={"best": 0.9},
                   children=[node("r1", "a", {"C": "1"}, {"score": 0.6})])
    result = compare_tree(original, changed)
    assert not result.reproduced
    assert [(p.name, p.original, p.replay) for p in result.params if not p.ok] == [
        ("cv", "3", "5")]
    assert [m.name for m in result.runs[0].metrics if not m.ok] == ["score"]
    loose = MetricPolicy(Tolerance(absolute=0.2))
    assert compare_tree(original, changed, loose).params[0].ok is False


def test_metric_filter_applies_to_every_run_and_children_without_it_compare_nothing():
    original = node("o", metrics={"loss": 1.0, "t": 3.0},
                    children=[node("o1", "a", metrics={"t": 1.0})])
    replay = node("r", metrics={"loss": 1.0, "t": 4.0},
                  children=[node("r1", "a", metrics={"t": 2.0})])
    result = compare_tree(original, replay, MetricPolicy(metrics=("loss",)))
    assert result.reproduced and result.runs[0].metrics == ()


def test_an_incomplete_relay_is_never_reproduced_and_says_why():
    tree = node("o", metrics={"m": 1.0})
    result = compare_tree(tree, node("r", metrics={"m": 1.0}),
                          relay_missing=["artifacts of run x: stored at /elsewhere"])
    assert not result.reproduced
    assert result.verdict == ("not reproduced (relay incomplete: artifacts of run x: "
                              "stored at /elsewhere)")


def test_artifacts_identical_differs_missing_extra():
    rows = compare_artifacts([("", {"model.pkl": "sha256:a", "fig.png": "sha256:b",
                                    "gone.csv": "sha256:c"},
                               {"model.pkl": "sha256:a", "fig.png": "sha256:x",
                                "new.txt": "sha256:d"})])
    assert {r.path: r.status for r in rows} == {"model.pkl": "identical", "fig.png": "differs",
                                                "gone.csv": "missing", "new.txt": "extra"}
    tree = node("o", metrics={"m": 1.0})
    from dataclasses import replace

    same = tuple(r for r in rows if r.ok)
    result = replace(compare_tree(tree, node("r", metrics={"m": 1.0})), artifacts=same)
    assert result.reproduced
    assert not replace(result, artifacts=rows).reproduced


def test_relay_report_summary_and_dict():
    report = RelayReport(runs=6, params=30, metric_points=120, artifacts=12,
                         artifact_bytes=52_000_000, models=1, mapping={"in": ("out", "name")})
    assert report.complete
    assert report.summary().startswith("relayed 6 run(s), 30 params, 120 metric points")
    assert "52.0 MB" in report.summary()
    assert report.to_dict()["mapping"] == {"in": {"run_id": "out", "name": "name"}}


def test_a_named_metric_of_the_children_is_not_required_at_the_root():
    original = node("o", metrics={"best": 1.0}, children=[node("o1", "a", {"C": "1"},
                                                               {"mean_test_score": 0.8,
                                                                "mean_fit_time": 0.1})])
    replay = node("r", metrics={"best": 1.0}, children=[node("r1", "a", {"C": "1"},
                                                             {"mean_test_score": 0.8,
                                                              "mean_fit_time": 0.3})])
    # wall-clock timing differs: fails only when every metric gates
    assert not compare_tree(original, replay, MetricPolicy(strict=True)).reproduced
    result = compare_tree(original, replay, MetricPolicy(metrics=("mean_test_score", "best")))
    assert result.reproduced and [r.name for r in result.rows] == ["best"]
    typo = compare_tree(original, replay, MetricPolicy(metrics=("mean_tset_score",)))
    assert not typo.reproduced and typo.rows[0].original is None
