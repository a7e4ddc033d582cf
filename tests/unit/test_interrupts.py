"""SIGINT and SIGTERM at the CLI edge: exit 128 + signal, one line naming the step."""

from __future__ import annotations

import io
import signal

import click
import pytest

from envlock import progress
from envlock.cli import main
from envlock.errors import Interrupted


def test_an_interrupt_is_found_behind_typers_exit_130():
    interrupt = Interrupted(signal.SIGTERM, "SIGTERM")
    try:
        try:
            raise click.exceptions.Exit(130) from interrupt
        except click.exceptions.Exit as typer_exit:
            raise SystemExit(130) from typer_exit
    except SystemExit as exc:
        assert main._interrupt_behind(exc) is interrupt
    assert main._interrupt_behind(SystemExit(0)) is None


@pytest.mark.parametrize("exc, code, name", [
    (Interrupted(signal.SIGTERM, "SIGTERM"), 143, "SIGTERM"),
    (Interrupted(signal.SIGINT, "SIGINT"), 130, "SIGINT"),
    (KeyboardInterrupt(), 130, "SIGINT"),  # before the handlers were installed
])
def test_one_line_with_the_step_and_what_was_recorded(monkeypatch, exc, code, name):
    progress.Reporter(stream=io.StringIO(), live=False).step("installing the wheels")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main._interrupted(exc) == code
    assert err.getvalue() == (f"envlock: interrupted ({name}) while installing the wheels; "
                              "nothing was recorded\n")
