"""The typer application: the global options and every command's registration.

Imported only when a command line needs typer (``envlock.cli.main`` runs a plain
``envlock lock`` without it, see ``envlock.cli.lockrun``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import import_module
from typing import Annotated

import typer

from envlock import __version__
from envlock.cli.main import MODULES

HELP = """Lock, containerize and replay the exact environment of an ML experiment.

Exit codes: 0 ok, 1 check failed (drift / differences), 2 bad input or environment error,
130/143 interrupted by SIGINT/SIGTERM.
"""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envlock {__version__}")
        raise typer.Exit()


def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Log subprocesses and show "
                                        "tracebacks.", envvar="ENVLOCK_DEBUG")] = False,
) -> None:
    if debug:
        import logging

        os.environ["ENVLOCK_DEBUG"] = "1"
        logging.basicConfig(level=logging.DEBUG, format="envlock: %(name)s: %(message)s")


def make_app(modules: Iterable[str] = MODULES) -> typer.Typer:
    """The CLI with the commands of ``modules`` (names from :data:`MODULES`) registered."""
    from envlock.cli import helptext

    cli = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      cls=helptext.Group)
    cli.callback()(main)
    for name in modules:
        import_module(f"envlock.cli.commands.{name}").register(cli)
    for info in cli.registered_commands:  # one --help treatment for every command
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = helptext.Command
    return cli
