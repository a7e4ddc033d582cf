"""``envlock show``: a human summary of a lockfile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.commands.lock import JsonOpt


def show_command(
    target: Annotated[Path, typer.Argument(help="Lockfile to summarize.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarize a lock: Python, torch/CUDA/cuDNN/NCCL, GPU and driver, packages, git."""
    from envlock import lockfile
    from envlock.cli import output as out
    from envlock.cli.render import lock_summary

    out.begin("show", as_json)
    lock = lockfile.load(target)
    raise typer.Exit(out.emit(lockfile.to_document(lock), lock_summary(lock, str(target))))


def register(app: typer.Typer) -> None:
    app.command("show")(show_command)
