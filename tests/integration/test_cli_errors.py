"""Bad input: one clear line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json
import os

import pytest

from envlock.model import lockfile
from tests.conftest import run_envlock
from tests.factories import make_lock


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("envlock: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, needle", [
    ("schema_version: 1\npackages: [\n", "malformed YAML"),
    ("schema_version: 7\n", "schema_version 7 is newer"),
    ("just text\n", "expected a YAML mapping"),
])
def test_show_bad_lockfiles(tmp_path, content, needle):
    bad = tmp_path / "bad.lock.yaml"
    bad.write_text(content)
    assert_one_line_error(run_envlock("show", str(bad)), str(bad), needle)


def test_check_and_diff_with_missing_lockfile(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_line_error(run_envlock("check", "--lock", str(missing)), "no such lockfile",
                          "envlock lock")
    good = lockfile.write(make_lock(), tmp_path / "good.yaml")
    assert_one_line_error(run_envlock("diff", str(good), str(missing)), str(missing))


def test_json_errors_are_machine_readable(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 99\n")
    result = run_envlock("show", str(bad), "--json")
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 2
    assert payload["error"]["type"] == "LockfileError"


@pytest.mark.parametrize("make_python, needle", [
    (lambda tmp: str(tmp / "nope" / "python"), "no such file"),
    (lambda tmp: "/bin/ls", "not a Python interpreter"),
    (lambda tmp: str(tmp), "is a directory without bin/python"),
])
def test_lock_with_a_bad_python(tmp_path, make_python, needle):
    out = tmp_path / "l.yaml"
    result = run_envlock("lock", "--python", make_python(tmp_path), "-o", str(out))
    assert_one_line_error(result, "--python", needle)
    assert not out.exists()


def test_lock_with_a_text_file_as_python(tmp_path):
    text = tmp_path / "python"
    text.write_text("not a program\n")
    assert_one_line_error(run_envlock("lock", "--python", str(text)), "not executable")
    os.chmod(text, 0o755)
    assert_one_line_error(run_envlock("lock", "--python", str(text), "-o",
                                      str(tmp_path / "l.yaml")), "--python")


def test_lock_with_a_missing_project_directory(tmp_path):
    assert_one_line_error(run_envlock("lock", "--project", str(tmp_path / "gone"), "-o",
                                      str(tmp_path / "l.yaml")), "no such directory")


def test_diff_exit_codes(tmp_path):
    a = lockfile.write(make_lock(), tmp_path / "a.yaml")
    same = run_envlock("diff", str(a), str(a))
    assert same.returncode == 0 and "No differences" in same.stdout
    changed = make_lock(python={**make_lock().python, "version": "3.12.1"})
    b = lockfile.write(changed, tmp_path / "b.yaml")
    result = run_envlock("diff", str(a), str(b))
    assert result.returncode == 1
    assert "env_digest: CHANGED" in result.stdout and "3.11.7 → 3.12.1" in result.stdout


def test_version_and_help():
    assert run_envlock("--version").stdout.strip().startswith("envlock ")
    for command in ("lock", "show", "diff", "check"):
        result = run_envlock(command, "--help")
        assert result.returncode == 0 and "--json" in result.stdout, command


def test_config_and_build_bad_input(tmp_path):
    assert_one_line_error(run_envlock("config", "--project", str(tmp_path / "nope")),
                          "no such directory")
    (tmp_path / "envlock.yaml").write_text("regsitry: x\n")
    assert_one_line_error(run_envlock("config", "--project", str(tmp_path)),
                          "unknown setting 'regsitry'", "known settings: registry")
    good = lockfile.write(make_lock(), tmp_path / "good.yaml")
    assert_one_line_error(run_envlock("build", str(good), "--from-run", "0" * 32),
                          "not both", "drop LOCK")


def test_a_program_that_echoes_its_arguments_never_shows_envlocks_probe(tmp_path):
    fake = tmp_path / "notpython"
    fake.write_text('#!/bin/sh\necho "notpython: cannot run: $2" >&2\nexit 3\n')
    fake.chmod(0o755)
    result = run_envlock("lock", "--python", str(fake), "-o", str(tmp_path / "l.yaml"))
    assert_one_line_error(result, "is not a Python interpreter", "it echoed its arguments")
    assert "import" not in result.stderr and not (tmp_path / "l.yaml").exists()


def test_capture_in_an_experiment_without_runs_says_so_and_keeps_nothing(tmp_path):
    result = run_envlock("capture", "--no-build", cwd=tmp_path,
                         env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("envlock: error")]
    assert error and "has no runs (pass --run-id, or run the training script first)" in error[0]
    assert "reachable" not in error[0]
    assert not (tmp_path / ".envlock").exists()


CREDS = ("--registry-username", "someone", "--registry-password-stdin")


@pytest.mark.parametrize("args, needles", [
    (("replay", "0123abcd", "--on", "kubernetes", "--dry-run"), ("--dry-run",
                                                                 "no image pull secret")),
    (("capture", "--no-build"), ("--no-build pushes nothing",)),
    (("import", "nothing.tar"), ("--registry", "loaded into the local engine")),
])
def test_credential_flags_that_would_go_unused_are_refused(tmp_path, args, needles):
    """Every credential flag is used or refused: never read, then silently dropped."""
    result = run_envlock(*args, *CREDS, cwd=tmp_path, stdin="a-password\n")
    assert_one_line_error(result, "--registry-username", *needles)
    assert "a-password" not in result.stdout + result.stderr


def test_build_dry_run_refuses_credentials(tmp_path):
    lock = lockfile.write(make_lock(), tmp_path / "envlock.lock.yaml")
    result = run_envlock("build", str(lock), "--dry-run", *CREDS, stdin="a-password\n")
    assert_one_line_error(result, "--registry-username", "--dry-run")


def test_a_registry_user_from_the_environment_alone_is_not_refused(tmp_path):
    """ENVLOCK_REGISTRY_USERNAME may be set for a whole CI job: only a password to read and
    drop is refused."""
    result = run_envlock("replay", "0123abcd", "--on", "kubernetes", "--dry-run", cwd=tmp_path,
                         env={"ENVLOCK_REGISTRY_USERNAME": "someone",
                              "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    assert "--image-pull-secret" not in result.stderr, result.stderr
