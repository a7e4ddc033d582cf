"""``envlock show``: a human summary of a lockfile."""

from __future__ import annotations

from typing import Annotated

import typer

from envlock.cli.options import JsonOpt


def show_command(
    target: Annotated[str, typer.Argument(help="Lockfile, or a captured MLflow run ID.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarize a lock (a lockfile or a captured run).

    Python, torch/CUDA/cuDNN/NCCL, GPU and driver, packages, git commit and dirtiness."""
    from envlock.cli import output as out
    from envlock.cli.render import lock_summary
    from envlock.model import lockfile
    from envlock.operations import targets

    out.begin("show", as_json)
    lock = targets.load(target)
    raise typer.Exit(out.emit(lockfile.to_document(lock), lock_summary(lock, str(target))))


def register(app: typer.Typer) -> None:
    app.command("show")(show_command)
