"""``envlock verify``: replay a run and turn the result into a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from envlock.cli.commands.build import (
    PasswordStdinOpt,
    RegistryUserOpt,
    engine_for_run,
)
from envlock.cli.commands.lock import JsonOpt
from envlock.cli.commands.replay import (
    CompareArtifactsOpt,
    CpusOpt,
    GpusOpt,
    MemoryOpt,
    MetricOpt,
    ShmSizeOpt,
    StrictOpt,
    Target,
    ToleranceOpt,
)


def verify_command(
    run_id: Annotated[str | None, typer.Argument(
        help="The captured MLflow run to verify.", show_default=False)] = None,
    replay_run: Annotated[str | None, typer.Option(
        "--replay", help="Conclude this replay run of `replay --on kubernetes --detach` "
        "instead: wait for its Job, compare, tag the verdict, write the reports.")] = None,
    tolerance: ToleranceOpt = None,
    metric: MetricOpt = None,
    strict: StrictOpt = False,
    compare_artifacts: CompareArtifactsOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report.")
                     ] = None,
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY).")
    ] = None,
    gpus: GpusOpt = None,
    shm_size: ShmSizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="A sweep: replay the last captured runs of this experiment "
        "(with --on kubernetes) and write one report.")] = None,
    last: Annotated[int, typer.Option("--last", help="Sweep: how many of the newest "
                                      "captured runs.")] = 5,
    parallel: Annotated[int, typer.Option("--parallel", help="Sweep: Jobs at a time.")] = 2,
    on: Annotated[Target, typer.Option("--on", help="Sweep: where to replay (kubernetes).")
                  ] = Target.local,
    namespace: Annotated[str, typer.Option("--namespace", help="Sweep: the Jobs' "
                                           "namespace.")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Replay a run and compare its metrics: exit 0 reproduced, 1 not, 2 bad input.

    The whole run tree is compared (child runs, params; artifacts with
    --compare-artifacts); a relay that could not carry everything is not reproduced.
    Metrics of time, throughput or the machine are shown but not gated unless --strict.
    Reports: JUnit XML (the run, the relay, each metric, the params, each child run and
    artifact) and Markdown."""
    from envlock import config
    from envlock.adapters.tracking import Tracker
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table
    from envlock.errors import EXIT_DRIFT, EXIT_OK, UsageError
    from envlock.model import report
    from envlock.model.resources import parse_flags
    from envlock.operations.replay import replay

    out.begin("verify", as_json)
    parse_flags(shm_size, cpus, memory)  # bad values fail before anything runs
    policy = config.load().metric_policy(tolerance, metric, strict)

    tracker = Tracker()
    if experiment:
        raise typer.Exit(_sweep(experiment, run_id, tracker, on, junit, markdown,
                                last=last, parallel=parallel, namespace=namespace, gpus=gpus,
                                policy=policy))
    if replay_run:
        result = _conclude(replay_run, run_id, tracker, policy)
        run_id = result.original_run_id
    elif not run_id:
        raise UsageError("verify needs a RUN_ID (or --replay REPLAY_RUN)",
                         "envlock verify RUN_ID")
    else:
        engine = engine_for_run(tracker, run_id, registry_username, registry_password_stdin)
        result = replay(run_id, engine=engine, tracker=tracker, gpus=gpus,
                        shm_size=shm_size, cpus=cpus, memory=memory, notify=out.notify,
                        policy=policy, compare_files=compare_artifacts,
                        output=out.passthrough(True))
    comparison = result.comparison
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
    if result.relay:
        human += "\n" + result.relay.summary()
    if comparison:
        human += "\n" + comparison_table(comparison)
    raise typer.Exit(out.emit({**result.to_dict(), "reproduced": reproduced}, human,
                              EXIT_OK if reproduced else EXIT_DRIFT))


def _conclude(replay_run: str, run_id: str | None, tracker: Any, policy: Any) -> Any:
    """--replay: follow a detached Kubernetes replay to its end and conclude it."""
    from envlock.cli import output as out
    from envlock.errors import UsageError
    from envlock.operations import kube

    original = tracker.run(replay_run).tags.get("envlock.replay_of")
    if run_id and run_id != original:
        raise UsageError(f"replay run {replay_run} replays {original}, not {run_id}",
                         "drop RUN_ID with --replay")
    return kube.conclude_replay(replay_run, tracker=tracker, policy=policy,
                                output=out.passthrough(True))


def _sweep(experiment: str, run_id: str | None, tracker: Any, on: Target,
           junit: Path | None, markdown: Path | None, *, last: int, parallel: int,
           namespace: str, gpus: str | None, policy: Any) -> int:
    """--experiment: the last N captured runs as parallel Jobs, one report; exit 0 all
    reproduced, 1 some not, 2 an infrastructure error stopped some."""
    from envlock.cli import output as out
    from envlock.errors import EXIT_DRIFT, EXIT_OK, EXIT_USAGE, UsageError
    from envlock.model import report
    from envlock.operations import kube

    if run_id or on is not Target.kubernetes:
        raise UsageError("--experiment replays a sweep of runs as Jobs",
                         "drop RUN_ID and pass --on kubernetes")
    items = kube.sweep(experiment, last=last, parallel=parallel, tracker=tracker,
                       options=kube.KubeOptions(namespace=namespace, gpus=gpus),
                       policy=policy)
    cases = report.sweep_cases(items)
    report.write(junit, markdown, "envlock.verify", cases,
                 report.sweep_markdown(experiment, items))
    code = EXIT_USAGE if any(i.error for i in items) else \
        EXIT_OK if all(i.reproduced for i in items) else EXIT_DRIFT
    lines = [f"{'REPRODUCED' if c.ok else 'FAILED'}  {c.name}: {c.detail}" for c in cases]
    ok = sum(1 for i in items if i.reproduced)
    lines.append(f"{ok}/{len(items)} runs of {experiment} reproduced")
    return out.emit({"experiment": experiment, "runs": [i.to_dict() for i in items],
                     "reproduced": code == EXIT_OK}, "\n".join(lines), code)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)
