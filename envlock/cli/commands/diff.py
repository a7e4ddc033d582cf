"""``envlock diff``: categorized differences between two locks."""

from __future__ import annotations

from typing import Annotated

import typer

from envlock.cli.commands.lock import JsonOpt


def diff_command(
    old: Annotated[str, typer.Argument(help="The earlier lockfile or MLflow run ID.")],
    new: Annotated[str, typer.Argument(help="The later lockfile or MLflow run ID.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what changed between two locks (files or run IDs); exit 1 if they differ.

    Packages (version and source), Python, torch/CUDA/cuDNN/NCCL, driver and GPU, OS, git."""
    from envlock import targets
    from envlock.cli import output as out
    from envlock.cli.render import diff_text
    from envlock.diff import diff_locks
    from envlock.errors import EXIT_DRIFT, EXIT_OK

    out.begin("diff", as_json)
    result = diff_locks(targets.load(old), targets.load(new))
    code = EXIT_OK if result.identical else EXIT_DRIFT
    raise typer.Exit(out.emit(result.to_dict(), diff_text(result, str(old), str(new)), code))


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)
