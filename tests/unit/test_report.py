import xml.etree.ElementTree as ET
from dataclasses import replace

from envlock.model.compare import compare
from envlock.model.diff import diff_locks
from envlock.model.integrity import FileProblem, IntegrityReport
from envlock.model.report import (
    Case,
    check_cases,
    check_markdown,
    junit,
    verify_cases,
    verify_markdown,
    write,
)
from envlock.operations.check import CheckResult
from tests.factories import make_lock, package


def _failed(xml: str) -> list[str]:
    suite = ET.fromstring(xml).find("testsuite")
    return [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]


def test_junit_has_the_run_and_one_case_per_metric():
    comparison = compare({"acc": 0.9, "loss": 0.1}, {"acc": 0.9, "loss": 0.2})
    xml = junit("envlock.verify", verify_cases(Case("replay of r1", True, "exit 0"), comparison))
    suite = ET.fromstring(xml).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")  # run, 2 metrics, params
    assert _failed(xml) == ["metric loss"]


def test_junit_has_the_relay_params_child_runs_and_artifacts():
    from envlock.model.compare import compare_artifacts, compare_tree
    from envlock.model.runtree import RelayReport, RunNode

    original = RunNode("o", "grid", {"cv": "3"}, {"best": 0.9}, 0, (
        RunNode("o1", "a", {"C": "1"}, {"score": 0.5}), RunNode("o2", "b", {"C": "2"})))
    replay = RunNode("r", "replay", {"cv": "3"}, {"best": 0.9}, 0, (
        RunNode("r1", "a", {"C": "1"}, {"score": 0.5}),))
    comparison = compare_tree(original, replay)
    comparison = replace(comparison, artifacts=compare_artifacts(
        [("", {"m.pkl": "sha256:1"}, {"m.pkl": "sha256:1"})]))
    relay = RelayReport(runs=2, missing=["artifacts of run b: stored at /x"])
    xml = junit("envlock.verify", verify_cases(Case("replay of o", True, "exit 0"), comparison,
                                               relay))
    names = [c.get("name") for c in ET.fromstring(xml).iter("testcase")]
    assert names == ["replay of o", "relay", "metric best", "params", "run a (o1)",
                     "run b (o2)", "artifact m.pkl"]
    assert _failed(xml) == ["relay", "run b (o2)"]
    text = verify_markdown("o", False, {}, comparison)
    assert "| b | o2 | - | missing | - | **differs**: missing in the replay |" in text
    assert "| (root) | m.pkl |" in text


def test_verify_markdown_summary():
    comparison = compare({"acc": 0.9}, {"acc": 0.9})
    text = verify_markdown("r1", True, {"run": "r1"}, comparison)
    assert text.startswith("## ✅ envlock verify r1: reproduced")
    assert "| acc | 0.9 | 0.9 | 0.0 | ok |" in text


def _check_result(live, strict=False, integrity=None):
    locked = make_lock()
    return CheckResult("envlock.lock.yaml", locked.env_digest, live.env_digest,
                       diff_locks(locked, live), integrity, strict)


def test_check_cases_for_an_identical_environment_all_pass():
    result = _check_result(make_lock())
    cases = check_cases(result)
    assert [c.name for c in cases] == ["environment digest", "python", "frameworks", "gpu",
                                       "host", "os", "git", "code", "runtime"]
    assert all(c.ok for c in cases)
    assert check_markdown(result, cases).startswith(
        "## ✅ envlock check: environment matches the lock")


def test_check_cases_name_each_drifted_package_and_only_count_env_categories():
    locked = make_lock()
    live = make_lock(packages=(package("numpy", "2.0.0"),), os={**locked.os, "kernel": "6.9"})
    result = _check_result(live)
    failed = _failed(junit("envlock.check", check_cases(result)))
    assert "environment digest" in failed and "package numpy" in failed
    assert "os" not in failed  # an OS difference is drift only with --strict
    strict = _failed(junit("envlock.check", check_cases(replace(result, strict=True))))
    assert "os" in strict


def test_check_cases_report_record_integrity():
    bad = IntegrityReport(3, 40, (FileProblem("six", "six.py", "modified"),), ())
    cases = check_cases(_check_result(make_lock(), integrity=bad))
    assert cases[-1] == Case("installed files (RECORD)", False, "six: modified six.py")
    assert "| installed files (RECORD) | **drift** |" in check_markdown(
        _check_result(make_lock(), integrity=bad), cases)


def test_write_appends_the_summary_for_github(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write(tmp_path / "reports" / "r.xml", tmp_path / "r.md", "s", [Case("a", True, "fine")],
          "## report\n")
    assert summary.read_text() == "earlier step\n## report\n"
    assert (tmp_path / "r.md").read_text() == "## report\n"
    assert ET.parse(tmp_path / "reports" / "r.xml").getroot().find("testsuite").get("tests") == "1"
