"""``envlock verify``: replay a run and turn the result into a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from envlock.cli import slurmrun
from envlock.cli.options import (
    JsonOpt,
    PasswordStdinOpt,
    RegistryUserOpt,
    RequireSignedOpt,
    check_signed,
)
from envlock.cli.replayopts import (
    KUBERNETES,
    OUTPUT,
    NamespaceOpt,
    OnOpt,
    ReplayFlags,
    SlurmFlags,
    Target,
    replay_options,
    slurm_options,
)
from envlock.model import runrecord
from envlock.operations.connect import engine_for_run, open_tracker

RunIdsArg = Annotated[list[str] | None, typer.Argument(
    help="The captured MLflow run to verify (several: a sweep, with --on slurm).",
    show_default=False, metavar="RUN_ID...")]
ParallelOpt = Annotated[int, typer.Option("--parallel", help="Sweep: Jobs at a time (Slurm: "
                                          "the job array's %N).", rich_help_panel=KUBERNETES)]
NO_SLURM = SlurmFlags()


@replay_options
@slurm_options
def verify_command(
    flags: ReplayFlags,
    run_ids: RunIdsArg = None,
    replay_run: Annotated[str | None, typer.Option(
        "--replay", help="Conclude this replay run of `replay --on kubernetes --detach` "
        "instead: wait for its Job, compare, tag the verdict, write the reports.",
        rich_help_panel=KUBERNETES)] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report.",
                                               rich_help_panel=OUTPUT)] = None,
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY).",
        rich_help_panel=OUTPUT)] = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="A sweep: replay the last captured runs of this experiment "
        "(with --on kubernetes) and write one report.", rich_help_panel=KUBERNETES)] = None,
    last: Annotated[int, typer.Option("--last", help="Sweep: how many of the newest "
                                      "captured runs.", rich_help_panel=KUBERNETES)] = 5,
    parallel: ParallelOpt = 2,
    on: OnOpt = Target.local,
    namespace: NamespaceOpt = "default",
    slurm: SlurmFlags = NO_SLURM,
    require_signed: RequireSignedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay a run and compare its metrics: exit 0 reproduced, 1 not, 2 bad input, 124 timed out.

    The whole run tree is compared (child runs, params; artifacts with --compare-artifacts); a relay that could not carry everything is not reproduced. Reports: JUnit XML (the run, the relay, each metric, the params, each child run and artifact) and Markdown. The container options are replay's, and so are their [tool.envlock] keys. With --on slurm, several RUN_IDs (or --experiment) are one Slurm job array, --parallel tasks at a time, results shown as tasks end; a task the cluster failed (preempted, node failure, time limit) is retried once and then reported as a cluster failure (exit 2), never as not reproduced."""  # noqa: E501 - paragraphs, wrapped by the terminal
    from envlock import config
    from envlock.cli import output as out
    from envlock.errors import UsageError
    from envlock.operations import replayplan

    out.begin("verify", as_json)
    run_id = slurmrun.only_on_slurm(on, slurm, run_ids=run_ids)
    request = flags.request(run_id or "")
    times = _repeat_here(flags.repeat, bool(experiment or replay_run) or on is not Target.local)
    replayplan.checked(request, settings := config.load())  # bad values fail before anything runs
    if on is Target.slurm and not replay_run:
        raise typer.Exit(_on_slurm(run_ids or [], request, settings, slurm, (experiment, last,
                                   parallel), (junit, markdown), require_signed))
    tracker = open_tracker()
    if experiment:
        from envlock.operations.kube import KubeOptions

        options = KubeOptions(namespace=namespace) if on is Target.kubernetes else None
        raise typer.Exit(_sweep(experiment, request, tracker, settings, options,
                                (junit, markdown), last=last, parallel=parallel))
    if replay_run:
        result = _conclude(replay_run, run_id, tracker, replayplan.checks(request, settings))
    elif not run_id:
        raise UsageError("verify needs a RUN_ID (or --replay REPLAY_RUN)",
                         "envlock verify RUN_ID")
    else:
        check_signed(run_id, require_signed)  # issue #27 hook: signature + provenance first
        engine = engine_for_run(tracker, run_id, registry_username, registry_password_stdin)
        raise typer.Exit(_here(request, times, engine, tracker, settings, (junit, markdown)))
    raise typer.Exit(_report(result, junit, markdown))


def _here(request: Any, times: int, engine: Any, tracker: Any, settings: Any,
          reports: tuple[Path | None, Path | None]) -> int:
    """The replay (or --repeat N replays) on this host's engine, reported."""
    from envlock.cli import output as out
    from envlock.operations.repeat import replay_repeated
    from envlock.operations.replay import replay_here

    if times > 1:
        return _report_repeat(replay_repeated(
            request, times, engine=engine, tracker=tracker, config=settings,
            notify=out.notify, output=out.passthrough(True)), *reports)
    return _report(replay_here(request, engine=engine, tracker=tracker, config=settings,
                               notify=out.notify, output=out.passthrough(True)), *reports)


def _on_slurm(run_ids: list[str], request: Any, settings: Any, slurm: SlurmFlags,
              sweep: tuple[str | None, int, int], reports: tuple[Path | None, Path | None],
              require_signed: bool) -> int:
    """--on slurm: one run as one batch job, reported as a local replay is; several (or
    ``sweep``'s --experiment, --last) as one job array, --parallel at a time."""
    from dataclasses import replace

    from envlock.errors import UsageError

    experiment, last, parallel = sweep
    if experiment:
        if run_ids:
            raise UsageError("give RUN_IDs or --experiment, not both")
        runs = open_tracker().last_captured(experiment, last)
        run_ids = [r.run_id for r in runs]
        if not run_ids:
            raise UsageError(f"experiment {experiment!r} has no captured run with a pinned "
                             "image", "capture runs with envlock capture --registry …")
    if not run_ids:
        raise UsageError("verify --on slurm needs RUN_IDs (or --experiment)",
                         "envlock verify RUN_ID... --on slurm")
    for each in run_ids:
        check_signed(each, require_signed)
    if len(run_ids) == 1 and not experiment:
        result = slurmrun.single(replace(request, run_id=run_ids[0]), settings, slurm)
        return _report(result, *reports)
    return slurmrun.sweep(run_ids, request, settings, slurm, parallel=parallel,
                          reports=reports)


def _report(result: Any, junit: Path | None, markdown: Path | None) -> int:
    """The verdict as JUnit XML and Markdown reports, and on stdout; its exit code."""
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table, explanations_text
    from envlock.errors import EXIT_DRIFT, EXIT_OK
    from envlock.model import report

    run_id, comparison = result.original_run_id, result.comparison
    reproduced = result.exit_code == 0 and bool(comparison and comparison.reproduced)
    run_case = report.Case(f"replay of {run_id}", result.exit_code == 0,
                           f"exit code {result.exit_code}, replay run {result.replay_run_id}")
    facts = {"run": run_id, "replay run": result.replay_run_id, "image": result.image,
             "exit code": result.exit_code}
    report.write(junit, markdown, "envlock.verify",
                 report.verify_cases(run_case, comparison, result.relay),
                 report.verify_markdown(run_id, reproduced, facts, comparison))
    human = (f"{'REPRODUCED' if reproduced else 'NOT REPRODUCED'}: run {run_id} "
             f"(replay {result.replay_run_id}, exit {result.exit_code})")
    human += "".join(f"\ninput changed: {text}" for text in result.inputs_changed)
    if result.relay:
        human += "\n" + result.relay.summary()
    if comparison:
        human += "\n" + comparison_table(comparison)
    human += "".join(f"\n{line}" for line in explanations_text(result.explanations))
    return out.emit({**result.to_dict(), "reproduced": reproduced}, human,
                    EXIT_OK if reproduced else EXIT_DRIFT)


def _repeat_here(times: int, elsewhere: bool) -> int:
    """--repeat N, refused with a sweep, a detached replay or a Kubernetes target."""
    if times > 1 and elsewhere:
        from envlock.errors import UsageError

        raise UsageError("--repeat replays a run N times on this host",
                         "drop --repeat with --experiment, --replay and --on kubernetes")
    return times


def _report_repeat(result: Any, junit: Path | None, markdown: Path | None) -> int:
    """--repeat N: the classification as reports and on stdout; exit 0 when it passes."""
    from envlock.cli import output as out
    from envlock.cli.render import repeat_text
    from envlock.errors import EXIT_DRIFT, EXIT_OK
    from envlock.model import report

    run_id = result.results[0].original_run_id
    report.write(junit, markdown, "envlock.verify", report.repeat_cases(result),
                 report.repeat_markdown(run_id, result))
    kind = result.repeat.kind if result.repeat else "not compared"
    human = (f"{'REPRODUCED' if result.passes else 'NOT REPRODUCED'} ({kind}, "
             f"{len(result.results)} replays): run {run_id} (replays "
             f"{', '.join(str(r.replay_run_id) for r in result.results)})\n"
             + repeat_text(result))
    return out.emit({**result.to_dict(), "reproduced": result.passes}, human,
                    EXIT_OK if result.passes else EXIT_DRIFT)


def _conclude(replay_run: str, run_id: str | None, tracker: Any, checks: Any) -> Any:
    """--replay: follow a detached Kubernetes replay to its end and conclude it."""
    from envlock.cli import output as out
    from envlock.errors import UsageError
    from envlock.operations import kube

    original = tracker.run(replay_run).tags.get(runrecord.REPLAY_OF)
    if run_id and run_id != original:
        raise UsageError(f"replay run {replay_run} replays {original}, not {run_id}",
                         "drop RUN_ID with --replay")
    return kube.conclude_replay(replay_run, tracker=tracker, checks=checks,
                                output=out.passthrough(True))


def _sweep(experiment: str, request: Any, tracker: Any, settings: Any, options: Any,
           reports: tuple[Path | None, Path | None], *, last: int, parallel: int) -> int:
    """--experiment: the last N captured runs as parallel Jobs, one report; exit 0 all
    reproduced, 1 some not, 2 an infrastructure error stopped some."""
    from envlock.cli import output as out
    from envlock.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE, UsageError
    from envlock.model import report
    from envlock.operations import kube

    if request.run_id or options is None:
        raise UsageError("--experiment replays a sweep of runs as Jobs",
                         "drop RUN_ID and pass --on kubernetes")
    items = kube.sweep(experiment, last=last, parallel=parallel, tracker=tracker,
                       config=settings, request=request, options=options)
    cases = report.sweep_cases(items)
    report.write(*reports, "envlock.verify", cases, report.sweep_markdown(experiment, items))
    code = EXIT_USAGE if any(i.error for i in items) else \
        EXIT_OK if all(i.reproduced for i in items) else EXIT_DRIFT
    lines = [f"{'REPRODUCED' if c.ok else 'FAILED'}  {c.name}: {c.detail}" for c in cases]
    ok = sum(1 for i in items if i.reproduced)
    lines.append(f"{ok}/{len(items)} runs of {experiment} reproduced")
    return out.emit({"experiment": experiment, "runs": [i.to_dict() for i in items],
                     "reproduced": code == EXIT_OK}, "\n".join(lines), code)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)
