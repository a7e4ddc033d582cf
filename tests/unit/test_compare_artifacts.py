"""Why a text, JSON or YAML artifact differs: its first differing line, or that only its
layout differs; read from the store for the differing files of a replay (fake tracker)."""

from __future__ import annotations

from types import SimpleNamespace

from envlock.cli.render import artifacts_table
from envlock.model.artifactdiff import MAX_BYTES, explain, is_text
from envlock.model.compare import MetricPolicy
from envlock.model.replayspec import Checks
from envlock.model.report import Case, verify_cases, verify_markdown
from envlock.operations.replay import conclude
from tests.fakes import FakeTracker

CSV = b"params,mean_fit_time,mean_test_score\nC=0.1,0.0123,0.8\nC=1,0.0150,0.9\n"


def test_text_is_known_by_its_name():
    assert is_text("cv_results.csv") and is_text("model/MLmodel") and is_text("a/b.YAML")
    assert not is_text("model.pkl") and not is_text("weights.safetensors")


def test_the_first_differing_line_is_shown_with_both_sides():
    other = CSV.replace(b"0.0123", b"0.0311")
    assert explain("cv_results.csv", CSV, other) == (
        "line 2 differs: original 'C=0.1,0.0123,0.8', replay 'C=0.1,0.0311,0.8'")
    assert explain("log.txt", b"a\nb\n", b"a\n") == "line 2 only in the original: 'b'"
    assert explain("log.txt", b"a\n", b"a\r\n").startswith("the same lines")
    long = explain("x.txt", b"a" * 500, b"b" * 500)
    assert "…" in long and len(long) < 300
    assert explain("x.txt", b"\xff\xfe", b"\xff\xfd") == "not UTF-8 text: compared by sha256 only"


def test_json_and_yaml_with_the_same_data_say_only_the_layout_differs():
    assert explain("m.json", b'{"a": 1, "b": [1, 2]}', b'{\n "b": [1, 2],\n "a": 1\n}') == (
        "the same JSON data; only its layout (formatting, key order) differs")
    assert explain("model/MLmodel", b"flavors:\n  a: 1\nrun_id: x\n",
                   b"run_id: x\nflavors: {a: 1}\n").startswith("the same YAML data")
    assert explain("m.json", b'{"a": 1}\n', b'{"a": 2}\n') == (
        "line 1 differs: original '{\"a\": 1}', replay '{\"a\": 2}'")
    assert explain("m.json", b"{oops", b"{oops!").startswith("line 1 differs")


def test_a_replay_explains_its_differing_text_artifacts():
    tracker = FakeTracker()
    files = {"cv_results.csv": CSV, "model.pkl": b"\x80\x04same", "notes.txt": b"hi\n",
             "big.txt": b"x" * (MAX_BYTES + 1)}
    original = tracker.add_run(name="grid", metrics={"best": 0.9}, artifacts=files)
    replay = tracker.add_run(name="replay", metrics={"best": 0.9}, artifacts={
        **files, "cv_results.csv": CSV.replace(b"0.0150", b"0.0210"),
        "model.pkl": b"\x80\x04diff", "big.txt": b"y" * (MAX_BYTES + 1)})
    run = SimpleNamespace(run_id=original, name="grid")
    comparison = conclude(tracker, run, replay, 0, Checks(MetricPolicy(), artifacts=True))
    assert comparison.artifacts is not None
    why = {a.path: (a.status, a.reason) for a in comparison.artifacts}
    assert why == {
        "cv_results.csv": ("differs", "line 3 differs: original 'C=1,0.0150,0.9', "
                                      "replay 'C=1,0.0210,0.9'"),
        "model.pkl": ("differs", None), "notes.txt": ("identical", None),
        "big.txt": ("differs", "over 1 MiB: compared by sha256 only")}
    assert "line 3 differs" in artifacts_table(comparison)
    [case] = [c for c in verify_cases(Case("r", True, ""), comparison)
              if c.name == "artifact cv_results.csv"]
    assert not case.ok and case.detail.startswith("differs: line 3 differs")
    assert "**differs**: line 3 differs" in verify_markdown("o", False, {}, comparison)
