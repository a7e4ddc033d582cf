"""The CI workflows we ship (ours and the users' examples) stay valid: they parse, and every
`envlock …` they run is accepted by today's CLI (command and options)."""

from __future__ import annotations

import re
import shlex

import click
import pytest
import typer.main
import yaml

from envlock.cli.main import app
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples" / "ci").glob("*.yml"))
INVOCATION = re.compile(r"(?:^|[\s;&|({])envlock\s+([a-z-]+)((?:[^\n;&|]|\\\n)*)", re.M)


def _shell(node, shell=False):
    """The shell text of GitHub `run:` steps and GitLab `script:` lists."""
    if isinstance(node, str):
        if shell:
            yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _shell(value, key in ("run", "script"))
    elif isinstance(node, list):
        for value in node:
            yield from _shell(value, shell)


def invocations(path):
    """(subcommand, argv) for each envlock call in the file's shell steps."""
    found = []
    for text in _shell(yaml.safe_load(path.read_text())):
        for name, rest in INVOCATION.findall(text.replace("\\\n", " ")):
            argv = ["VALUE" if arg.startswith(("$", '"$')) else arg
                    for arg in shlex.split(rest.replace("\n", " "))]
            found.append((name, argv))
    return found


def test_there_are_examples_for_github_and_gitlab():
    assert {p.name for p in EXAMPLES} == {"github-reproducibility.yml", "gitlab-ci.yml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_envlock_call_is_accepted_by_the_cli(path):
    calls = invocations(path)
    assert {name for name, _ in calls} == {"check", "verify", "build"}
    group = typer.main.get_command(app)
    for name, argv in calls:
        command = group.commands[name]  # type: ignore[attr-defined]
        try:
            command.make_context(name, list(argv))
        except click.UsageError as exc:  # unknown option, missing value, …
            pytest.fail(f"{path.name}: envlock {name} {' '.join(argv)}: {exc}")


def test_gitlab_reports_junit_and_github_uploads_the_reports():
    gitlab = yaml.safe_load((ROOT / "examples/ci/gitlab-ci.yml").read_text())
    assert gitlab["envlock-check"]["artifacts"]["reports"]["junit"] == "envlock-check.xml"
    github = yaml.safe_load((ROOT / "examples/ci/github-reproducibility.yml").read_text())
    assert set(github["jobs"]) == {"check", "verify", "rebuild"}
    secrets = {v for job in github["jobs"].values() for v in (job.get("env") or {}).values()}
    assert secrets and all(v.startswith("${{ secrets.") for v in secrets)  # never inline


def test_our_own_workflow_runs_the_ci_entry_point():
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any("bash .ci/run" in run for run in runs)
    assert any("mypy envlock" in run for run in runs) and any("ruff check" in run for run in runs)


#: Every GitHub Actions workflow we ship: ours and the one users copy.
WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.yml"),
                    *(ROOT / "examples" / "ci").glob("github-*.yml")])


def zizmor() -> str:
    """zizmor from the test extras, beside this interpreter (a missing one fails the test)."""
    import sys
    from pathlib import Path

    path = Path(sys.executable).with_name("zizmor")
    assert path.exists(), f"{path} is missing: pip install -e '.[test]' installs zizmor"
    return str(path)


def test_both_workflows_are_linted():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "github-reproducibility.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_pass_zizmor_with_no_finding(path):
    """Actions pinned by commit SHA, least-privilege permissions, no persisted checkout
    credentials: zizmor (offline, default persona) reports nothing."""
    import json
    import subprocess

    result = subprocess.run([zizmor(), "--offline", "--format", "json", str(path)],
                            capture_output=True, text=True, timeout=120)
    findings = json.loads(result.stdout or "null")
    assert findings == [], "\n".join(
        f"{f['ident']}: {f['desc']} at line "
        f"{f['locations'][0]['concrete']['location']['start_point']['row'] + 1}"
        for f in findings or []) or result.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_a_full_commit_sha_with_its_tag(path):
    uses = re.findall(r"uses:\s*(\S+)(.*)", path.read_text())
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{ref}: no release tag comment"
