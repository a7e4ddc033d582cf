"""``replay --on slurm`` and ``verify RUN… --on slurm``, rendered: the dry run's script,
one replay (printed as a local replay prints), a sweep's results as its tasks end, one
summary table and one JUnit/Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envlock.cli.replayopts import SlurmFlags, Target, only_with
from envlock.operations.connect import open_tracker


def only_on_slurm(on: Target, slurm: SlurmFlags, detach: bool = False, password: bool = False,
                  dry_run: bool = False, run_ids: list[str] | None = None) -> str | None:
    """The Slurm options (and several runs) only with --on slurm; --detach and a registry
    password not; --dry-run not on this host. The first of ``run_ids``."""
    if on is Target.local and dry_run:
        only_with(on, {"--dry-run": dry_run}, only="kubernetes or --on slurm")
    if on is not Target.slurm:
        only_with(on, {**slurm.flags(), "several RUN_IDs": len(run_ids or ()) > 1},
                  only="slurm")
    else:
        only_with(on, {"--detach": detach, "--registry-password-stdin": password},
                  only="local or kubernetes")
    return run_ids[0] if run_ids else None


def replay(request: Any, config: Any, slurm: SlurmFlags, dry_run: bool, as_json: bool) -> int:
    """One replay as a batch job; exit code the experiment's (124: --timeout)."""
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table
    from envlock.operations import replayplan
    from envlock.operations import slurm as ops

    settings = ops.settings_from(config, slurm.given())
    tracker = open_tracker()
    spec, context = replayplan.slurm(request, tracker=tracker, config=config,
                                     shared=ops.job_root(settings), fetch=not dry_run)
    if dry_run:
        script = ops.plan_script(spec, context, settings)
        return out.emit({"run_id": spec.run_id, "on": "slurm", "script": script}, script)
    result = ops.replay_on_slurm(spec, context, tracker=tracker, settings=settings,
                                 output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {spec.run_id} on slurm (job {result.job}, node {result.node}, "
             f"partition {result.partition}): exit {result.exit_code}"
             + (f", replay run {result.replay_run_id}" if result.replay_run_id else "")]
    lines += [f"input changed: {text}" for text in result.inputs_changed]
    if result.relay:
        lines.append(result.relay.summary())
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    return out.emit(result.to_dict(), "\n".join(lines), result.exit_code)


def single(request: Any, config: Any, slurm: SlurmFlags) -> Any:
    """``verify RUN --on slurm``: the replay's result (the job's output on stderr)."""
    from envlock.cli import output as out
    from envlock.operations import replayplan
    from envlock.operations import slurm as ops

    settings = ops.settings_from(config, slurm.given())
    tracker = open_tracker()
    spec, context = replayplan.slurm(request, tracker=tracker, config=config,
                                     shared=ops.job_root(settings))
    return ops.replay_on_slurm(spec, context, tracker=tracker, settings=settings,
                               output=out.passthrough(True))


def sweep(run_ids: list[str], request: Any, config: Any, slurm: SlurmFlags, *, parallel: int,
          reports: tuple[Path | None, Path | None]) -> int:
    """The runs as one job array; exit 0 all reproduced, 1 some not, 2 an error or a
    cluster failure stopped some (never counted as not reproduced)."""
    import sys

    from envlock.cli import output as out
    from envlock.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE
    from envlock.model import report
    from envlock.operations import slurm as ops

    settings = ops.settings_from(config, slurm.given())
    tracker = open_tracker()

    def heard(item: Any) -> None:  # as each task ends; stderr keeps stdout the report
        print(f"{item.verdict:<16} {item.run_id}  {_detail(item)}", file=sys.stderr, flush=True)

    items = ops.sweep(run_ids, request=request, tracker=tracker, config=config,
                      settings=settings, concurrency=parallel, on_result=heard)
    cases = [report.Case(f"replay of {i.run_id}", i.reproduced, f"{i.verdict}: {_detail(i)}")
             for i in items]
    ok = sum(1 for i in items if i.reproduced)
    title = f"envlock verify --on slurm ({len(items)} runs)"
    rows = [(i.run_id, i.verdict, (i.result.replay_run_id if i.result else None) or "-", _detail(i))
            for i in items]
    report.write(*reports, "envlock.verify", cases, report.markdown(
        title, ok == len(items), f"{ok}/{len(items)} reproduced", {"runs": len(items)},
        ("run", "verdict", "replay run", "job / explanation"), rows))
    code = EXIT_USAGE if any(i.error or i.cluster_failure for i in items) else \
        EXIT_OK if ok == len(items) else EXIT_DRIFT
    table = _table(rows) + f"\n{ok}/{len(items)} reproduced, " + ", ".join(
        f"{sum(1 for i in items if i.verdict == v)} {v}"
        for v in ("not reproduced", "cluster failure", "error"))
    return out.emit({"runs": [i.to_dict() for i in items], "reproduced": code == EXIT_OK},
                    table, code)


def _detail(item: Any) -> str:
    if item.cluster_failure:
        return str(item.cluster_failure)
    if item.error:
        return str(item.error)
    result = item.result
    where = f"job {result.job} on {result.node}, exit {result.exit_code}"
    if item.reproduced or not result.comparison:
        return where
    differs = _differences(result.comparison)[:3]
    return where + (f"; {'; '.join(differs)}" if differs else "")


def _differences(comparison: Any) -> list[str]:
    """The first few metric differences that gate the verdict, one line each."""
    rows = [*comparison.rows, *(m for run in comparison.runs for m in run.metrics)]
    return [f"{m.name}: {m.original} -> {m.replay}" for m in rows if not m.ok and not m.ungated]


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("run", "verdict", "replay run", "job / explanation")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(3)]
    return "\n".join("  ".join([*(str(r[i]).ljust(widths[i]) for i in range(3)), str(r[3])])
                     for r in [head, *rows])
