"""``--help`` that reads well at any width, applied once to every command.

Typer's rich help keeps a docstring's hard line breaks (a summary broken mid-sentence at
80 columns) and reads help texts as rich markup, which eats bracketed words such as
``[tool.envlock]``. These click classes reflow each paragraph into one line (rich wraps
it to the terminal), keep indented blocks (examples) as they are, and escape what rich
would take for markup. Nothing here runs unless help is printed.
"""

from __future__ import annotations

import inspect
from typing import Any

import click
from typer.core import TyperCommand, TyperGroup


def reflow(text: str) -> str:
    """Each paragraph on one line; a paragraph with an indented line stays as written."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if any(line[:1].isspace() for line in p.splitlines())
                       else " ".join(line.strip() for line in p.splitlines())
                       for p in paragraphs)


def readable(command: click.Command) -> None:
    """Reflow ``command``'s help and escape every help text of it for rich (once)."""
    if getattr(command, "_envlock_readable", False):
        return
    from rich.markup import escape

    command._envlock_readable = True  # type: ignore[attr-defined]
    if command.help:
        command.help = escape(reflow(command.help))
    helps = _argument_helps(command)
    for param in command.params:
        text = getattr(param, "help", None) or helps.get(param.name or "")
        if text:
            # click declares `help` on Option only; typer's arguments carry one too
            setattr(param, "help", escape(text))  # noqa: B010


def _argument_helps(command: click.Command) -> dict[str, str]:
    """The help of each argument, read again from the command's function: with click 8.5,
    typer 0.25's arguments lose theirs (click's own ``help`` attribute overwrites it)."""
    if not any(isinstance(p, click.Argument) and not getattr(p, "help", None)
               for p in command.params):
        return {}
    from typer.models import ArgumentInfo
    from typer.utils import get_params_from_function

    function = getattr(command.callback, "__wrapped__", None)
    if function is None:
        return {}
    return {name: meta.default.help for name, meta in get_params_from_function(function).items()
            if isinstance(meta.default, ArgumentInfo) and meta.default.help}


class Command(TyperCommand):
    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        readable(self)
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        readable(self)
        for command in self.commands.values():  # their summaries are listed
            readable(command)
        super().format_help(ctx, formatter)
