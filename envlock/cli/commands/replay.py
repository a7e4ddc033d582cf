"""``envlock replay`` and ``envlock lineage``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from envlock.cli.commands.lock import JsonOpt


def replay_command(
    run_id: Annotated[str, typer.Argument(help="The captured MLflow run to replay.")],
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="all | none | N | device=0,1 (default: all when the run had GPUs and "
        "this host has them).")] = None,
    mount: Annotated[list[str] | None, typer.Option("--mount", help="SRC:DST bind mount "
                                                       "(repeatable).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="K=V for the container "
                                                     "(repeatable).")] = None,
    command: Annotated[str | None, typer.Option("--command", help="Run this instead of "
                                                   "the captured command.")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not create a replay run.")
                        ] = False,
    tolerance: Annotated[str | None, typer.Option(
        "--tolerance", help="Metric tolerance: 1e-6 (absolute), 0.5% (relative), or "
        "abs=…,rel=…. Default: exact.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Compare only these "
                                                        "metrics (repeatable).")] = None,
    network: Annotated[str, typer.Option("--network", help="Container network (none, host, "
                                         "bridge).")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Run even when the pre-flight GPU/"
                                        "driver checks fail.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Run the whole replay in the "
                                         "background; its output goes to a log file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run a captured experiment from its pinned image and compare its metrics.

    Pulls the image by digest, checks the host's GPUs and driver, runs it hardened, logs a
    replay run linked to the original. Exits with the experiment's exit code."""
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table
    from envlock.compare import Tolerance
    from envlock.engine import Engine
    from envlock.replay import replay
    from envlock.tracking import Tracker

    out.begin("replay", as_json)
    tol = Tolerance.parse(tolerance)
    if detach:
        raise typer.Exit(_detach(run_id))
    result = replay(run_id, engine=Engine.connect(), tracker=Tracker(), gpus=gpus,
                    mounts=mount, env=env, command=command, track=not no_track, force=force,
                    tolerance=tol, metrics=tuple(metric or ()), network=network,
                    output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {run_id}: exit {result.exit_code}"
             + (f", replay run {result.replay_run_id}" if result.replay_run_id else "")]
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    raise typer.Exit(out.emit(result.to_dict(), "\n".join(lines), result.exit_code))


def _detach(run_id: str) -> int:
    """Re-run this same command without --detach as a background process; print where."""
    import subprocess
    import tempfile

    from envlock.cli import output as out

    argv = [a for a in sys.argv[1:] if a not in ("--detach", "--json")]  # the log is for people
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the background process
        prefix=f"envlock-replay-{run_id[:12]}-", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-m", "envlock", *argv], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    return out.emit({"pid": process.pid, "log": log.name},
                    f"replay of {run_id} running in the background (pid {process.pid}); "
                    f"output: {log.name}; follow it with: envlock lineage {run_id}")


def lineage_command(
    run_id: Annotated[str, typer.Argument(help="An original (captured) MLflow run.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run's env digest and image, and every replay with its verdict."""
    from envlock.cli import output as out
    from envlock.tracking import Tracker

    out.begin("lineage", as_json)
    tracker = Tracker()
    run = tracker.run(run_id)
    replays = tracker.replays_of(run)
    tags = run.envlock_tags()
    result: dict[str, Any] = {
        "run_id": run.run_id, "env_digest": tags.get("envlock.env_digest"),
        "image": tags.get("envlock.image"),
              "replays": [{"run_id": r.run_id, "status": r.status,
                           "verdict": r.tags.get("envlock.verdict"),
                           "exit_code": r.tags.get("envlock.exit_code")} for r in replays]}
    lines = [f"run {run.run_id} ({run.name})",
             f"  env_digest  {result['env_digest'] or '- (not captured)'}",
             f"  image       {result['image'] or '-'}",
             f"  replays     {len(replays)}"]
    lines += [f"    {r['run_id']}  {r['status']:<9} {r['verdict'] or '-'}"
              for r in result["replays"]]
    raise typer.Exit(out.emit(result, "\n".join(lines)))


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
    app.command("lineage")(lineage_command)
