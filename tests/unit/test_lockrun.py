"""``envlock lock`` without typer (envlock.cli.lockrun): a command line the plain parser
takes gives exactly the options typer would give; any other goes to typer unchanged."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

import envlock.cli.main as cli
from envlock.cli import lockrun
from envlock.cli.lockrun import LockArgs, parse

TAKEN = [
    ["lock"],
    ["lock", "-o", "out.yaml"],
    ["lock", "--output=out/x.yaml", "--python", "/usr/bin/python3", "--json"],
    ["lock", "-p", "venv", "-c", "python train.py --lr 3", "--project", "proj/",
     "--no-gpu", "--no-code"],
    ["lock", "--no-git", "--env-allow", "MY_*", "--env-allow=SEED", "--allow-file", "a.pem",
     "--code-max-size", "1g", "--allow-file", "b/*.key"],
    ["lock", "--command=echo a=b", "--project=."],
]
LEFT_TO_TYPER = [
    ["lock", "--help"], ["lock", "-h"], ["lock", "--bogus"], ["lock", "extra"],
    ["lock", "-oout.yaml"], ["lock", "--output="], ["lock", "-o"], ["lock", "-o", "-x"],
    ["lock", "-o", "a", "-o", "b"], ["lock", "--no-git", "--no-code"], ["lock", "--json=1"],
    ["lock", "--", "x"], ["lock", "-c", "-m pytest"], ["--debug", "lock"], ["show", "x"],
    ["lock", "--outp", "x"], [],
]


def typer_args(argv: list[str], monkeypatch) -> LockArgs:
    """The options typer hands the lock command for ``argv``."""
    from envlock.cli.main import make_app

    seen = []
    monkeypatch.setattr(lockrun, "run_lock", lambda args: seen.append(args) or 0)
    result = CliRunner().invoke(make_app(["lock"]), argv)
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_the_plain_parser_reads_what_typer_reads(argv, monkeypatch):
    plain = parse(argv)
    assert plain is not None
    assert plain == typer_args(argv, monkeypatch)


def test_defaults_are_the_commands_defaults(monkeypatch):
    assert parse(["lock"]) == LockArgs(output=Path("envlock.lock.yaml"), project=Path("."))
    assert parse(["lock", "--env-allow", "A", "--env-allow", "B"]).env_allow == ["A", "B"]


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=" ".join)
def test_anything_else_is_left_to_typer(argv):
    assert parse(argv) is None


def test_debug_from_the_environment_is_left_to_typer(monkeypatch):
    monkeypatch.setenv("ENVLOCK_DEBUG", "1")
    assert parse(["lock", "-o", "x"]) is None


def test_a_plain_lock_runs_without_building_the_typer_app(monkeypatch):
    import envlock.cli.app as app

    ran = []
    monkeypatch.setattr(lockrun, "run_lock", lambda args: ran.append(args) or 3)
    monkeypatch.setattr(app, "make_app", lambda *_: pytest.fail("typer app built"))
    with pytest.raises(SystemExit) as ended:
        cli._run_cli(["lock", "-o", "x.yaml", "--no-gpu"])
    assert ended.value.code == 3
    assert ran == [LockArgs(output=Path("x.yaml"), no_gpu=True)]


def test_other_command_lines_go_through_typer(monkeypatch):
    import envlock.cli.app as app

    built = []
    monkeypatch.setattr(app, "make_app", lambda modules: built.append(list(modules))
                        or (lambda: None))
    cli._run_cli(["lock", "--help"])
    cli._run_cli(["show", "x.yaml"])
    assert built == [["lock"], ["show"]]
