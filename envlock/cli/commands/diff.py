"""``envlock diff``: categorized differences between two locks."""

from __future__ import annotations

from typing import Annotated

import typer

from envlock.cli.options import JsonOpt


def diff_command(
    old: Annotated[str, typer.Argument(help="The earlier lockfile or MLflow run ID.")],
    new: Annotated[str, typer.Argument(help="The later lockfile or MLflow run ID.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what changed between two locks (files or run IDs); exit 1 if they differ.

    Packages (version and source), Python, torch/CUDA/cuDNN/NCCL, driver and GPU, OS, git.
    When NEW is a replay run: the original's host, GPU and OS against the host the replay
    ran on, beside the replay's verdict (exit 1 if the hosts differ)."""
    from envlock.cli import output as out
    from envlock.cli.render import diff_text, host_diff_text
    from envlock.errors import EXIT_DRIFT, EXIT_OK
    from envlock.model.diff import diff_locks
    from envlock.operations import targets

    out.begin("diff", as_json)
    replayed = targets.load_replay_host(new)
    if replayed is not None:
        from envlock.model.replayhost import host_diff

        snap, run = replayed
        found = host_diff(targets.load(old), snap, original_run_id=str(old),
                          replay_run_id=run.run_id, replay_tags=run.tags)
        code = EXIT_OK if found.identical else EXIT_DRIFT
        raise typer.Exit(out.emit(found.to_dict(), host_diff_text(found), code))
    result = diff_locks(targets.load(old), targets.load(new))
    code = EXIT_OK if result.identical else EXIT_DRIFT
    raise typer.Exit(out.emit(result.to_dict(), diff_text(result, str(old), str(new)), code))


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)
