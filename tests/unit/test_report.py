import xml.etree.ElementTree as ET

from envlock.compare import Tolerance, compare
from envlock.report import junit, markdown


def test_junit_has_the_run_and_one_case_per_metric():
    comparison = compare({"acc": 0.9, "loss": 0.1}, {"acc": 0.9, "loss": 0.2}, Tolerance())
    root = ET.fromstring(junit("envlock.verify", ("replay of r1", True, "exit 0"), comparison))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed == ["metric loss"]


def test_markdown_summary():
    comparison = compare({"acc": 0.9}, {"acc": 0.9})
    text = markdown("envlock verify r1", True, {"run": "r1"}, comparison)
    assert text.startswith("## ✅ envlock verify r1: reproduced")
    assert "| acc | 0.9 | 0.9 | 0.0 | ok |" in text
