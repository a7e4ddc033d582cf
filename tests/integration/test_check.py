"""`envlock check` on real venvs: drift exits 1 with a readable diff; --deep catches edits."""

from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import run_envlock
from tests.integration.conftest import pip


def lock_venv(python, path):
    run_envlock("lock", "--python", str(python), "-o", str(path), "--no-git", check=True)


def test_unchanged_environment_passes(fresh_venv, tmp_path):
    lock = tmp_path / "l.yaml"
    lock_venv(fresh_venv, lock)
    result = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK:")


def test_added_and_changed_packages_are_drift(fresh_venv, tmp_path):
    lock = tmp_path / "l.yaml"
    pip(fresh_venv, "install", "six==1.16.0")
    lock_venv(fresh_venv, lock)
    pip(fresh_venv, "install", "six==1.17.0", "typing-extensions")
    result = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv))
    assert result.returncode == 1
    assert "DRIFT" in result.stdout
    assert "six" in result.stdout and "1.16.0 → 1.17.0" in result.stdout
    assert re.search(r"\+\s+typing-extensions\s+\S+\s+index", result.stdout)
    assert "git:" not in result.stdout  # locked without git: git is not compared
    payload = json.loads(run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv),
                                     "--json").stdout)
    assert payload["exit_code"] == 1 and payload["result"]["drifted"] is True
    added = [p["name"] for p in payload["result"]["diff"]["packages"]["added"]]
    assert added == ["typing-extensions"]


def test_check_writes_ci_reports(fresh_venv, tmp_path):
    """The CI form of the gate: JUnit cases name what drifted; Markdown for the step summary."""
    import xml.etree.ElementTree as ET

    lock = tmp_path / "l.yaml"
    pip(fresh_venv, "install", "six==1.16.0")
    lock_venv(fresh_venv, lock)
    summary = tmp_path / "step-summary.md"
    reports = ("--junit", str(tmp_path / "check.xml"), "--markdown", str(tmp_path / "check.md"))
    ok = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv), *reports,
                     env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.returncode == 0
    suite = ET.parse(tmp_path / "check.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 7
    pip(fresh_venv, "install", "six==1.17.0")
    drift = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv), *reports,
                        env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert drift.returncode == 1
    suite = ET.parse(tmp_path / "check.xml").getroot().find("testsuite")
    failed = {c.get("name"): c.find("failure").get("message")
              for c in suite.findall("testcase") if c.find("failure") is not None}
    assert set(failed) == {"environment digest", "package six"}
    assert "locked 1.16.0" in failed["package six"] and "live 1.17.0" in failed["package six"]
    assert (tmp_path / "check.md").read_text().startswith("## ❌ envlock check: DRIFT")
    summary_text = summary.read_text()  # both runs appended, as two CI steps would
    assert "## ✅ envlock check" in summary_text and "## ❌ envlock check" in summary_text


def test_deep_check_finds_a_file_edited_in_site_packages(fresh_venv, tmp_path):
    pip(fresh_venv, "install", "six==1.16.0")
    lock = tmp_path / "l.yaml"
    lock_venv(fresh_venv, lock)
    assert run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv),
                       "--deep").returncode == 0
    six_py = subprocess.run([str(fresh_venv), "-c", "import six; print(six.__file__)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    with open(six_py, "a") as handle:
        handle.write("\n# hot-fix applied by hand\n")
    shallow = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv))
    assert shallow.returncode == 0  # versions did not change ...
    deep = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv), "--deep")
    assert deep.returncode == 1  # ... but the file did
    assert f"modified: {six_py} (six)" in deep.stdout


def test_strict_fails_on_differences_outside_the_environment(fresh_venv, tmp_path):
    lock = tmp_path / "l.yaml"
    lock_venv(fresh_venv, lock)
    env = {"OMP_NUM_THREADS": "3"}
    loose = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv), "--project",
                        str(tmp_path), env=env)
    strict = run_envlock("check", "--lock", str(lock), "--python", str(fresh_venv), "--strict",
                         "--project", str(tmp_path), env=env)
    assert loose.returncode == 0 and "OMP_NUM_THREADS" in loose.stdout
    assert strict.returncode == 1
