"""``envlock replay`` and ``envlock lineage``."""

from __future__ import annotations

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
    OUTPUT,
    DryRunOpt,
    EnvFromSecretOpt,
    ImagePullSecretOpt,
    NamespaceOpt,
    NodeSelectorOpt,
    OnOpt,
    ReplayFlags,
    SlurmFlags,
    Target,
    TolerationOpt,
    only_with,
    replay_options,
    slurm_options,
)
from envlock.model import runrecord
from envlock.operations.connect import engine_for_run, open_tracker, read_credentials
from envlock.operations.repeat import check_repeat

NO_SLURM = SlurmFlags()


@replay_options
@slurm_options
def replay_command(
    flags: ReplayFlags,
    run_id: Annotated[str, typer.Argument(help="The captured MLflow run to replay.")],
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not create a replay run.",
                                           rich_help_panel=OUTPUT)] = False,
    force: Annotated[bool, typer.Option("--force", help="Run even when the pre-flight GPU/"
                                        "driver checks fail.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Run the whole replay in the "
                                         "background; its output goes to a log file.",
                                         rich_help_panel=OUTPUT)] = False,
    on: OnOpt = Target.local,
    namespace: NamespaceOpt = "default",
    node_selector: NodeSelectorOpt = None,
    toleration: TolerationOpt = None,
    image_pull_secret: ImagePullSecretOpt = None,
    env_from_secret: EnvFromSecretOpt = None,
    dry_run: DryRunOpt = False,
    slurm: SlurmFlags = NO_SLURM,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    require_signed: RequireSignedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run a captured experiment from its pinned image and compare its metrics.

    Pulls the image by digest, checks the host's GPUs and driver, runs it hardened, logs a replay run linked to the original: every run the experiment makes (child runs of a search too) is relayed with its params, metric histories, tags, datasets, artifacts and models, then compared with the original's tree (metrics, params; artifacts with --compare-artifacts). Exits with the experiment's exit code (124 when --timeout stopped it). With --on kubernetes the image runs as a Job on the current cluster (pre-flight on its nodes' GPU labels); its MLflow logs straight into the replay run, so the tracking store must be a server the cluster can reach. With --on slurm it runs as a batch job (Podman or Charliecloud on the node) and its MLflow store, in the job's folder on the shared filesystem, is relayed as for a local replay; the job id, node, partition and exit reason are tagged on the replay run."""  # noqa: E501 - one paragraph, wrapped by the terminal
    from envlock import config
    from envlock.cli import output as out
    from envlock.operations import replayplan

    out.begin("replay", as_json)
    request = flags.request(run_id, track=not no_track, force=force)
    times = check_repeat(flags.repeat, track=not no_track)
    settings = config.load()
    replayplan.checked(request, settings)  # bad values fail before anything runs
    only_with(on, {"--namespace": namespace != "default", "--node-selector": node_selector,
                   "--toleration": toleration, "--image-pull-secret": image_pull_secret,
                   "--env-from-secret": env_from_secret}
              if on is not Target.kubernetes else
              {"--mount": request.container.mounts, "--no-track": no_track,
               "--repeat": times > 1,
               "--network": request.container.network not in (None, "none")})
    slurmrun.only_on_slurm(on, slurm, detach, registry_password_stdin, dry_run)
    check_signed(run_id, require_signed)  # signature + provenance first (issue #27)
    login = (registry_username, registry_password_stdin)
    if on is Target.slurm:
        raise typer.Exit(slurmrun.replay(request, settings, slurm, dry_run, as_json))
    if on is Target.kubernetes:
        _no_login_for_dry_run(dry_run, registry_password_stdin)
        options = _kube_options(namespace, node_selector, toleration, image_pull_secret,
                                env_from_secret, login)
        raise typer.Exit(_on_kubernetes(request, options, settings, dry_run=dry_run,
                                        detach=detach, as_json=as_json))
    if detach:
        credentials = read_credentials(*login)
        raise typer.Exit(_detach(run_id, credentials[1] if credentials else None))
    if times > 1:
        raise typer.Exit(_repeated(request, times, settings, login, as_json))
    raise typer.Exit(_here(request, settings, login, as_json))


def _kube_options(namespace: str, node_selector: list[str] | None,
                  toleration: list[str] | None, image_pull_secret: str | None,
                  env_from_secret: list[str] | None, login: tuple[str | None, bool]) -> Any:
    from envlock.operations.kube import KubeOptions

    return KubeOptions(namespace=namespace, node_selector=tuple(node_selector or ()),
                       tolerations=tuple(toleration or ()), image_pull_secret=image_pull_secret,
                       env_from_secrets=tuple(env_from_secret or ()),
                       registry_credentials=read_credentials(*login))


def _no_login_for_dry_run(dry_run: bool, password_stdin: bool) -> None:
    if dry_run and password_stdin:
        from envlock.errors import UsageError

        raise UsageError("--registry-username/--registry-password-stdin are not used by "
                         "--dry-run: it creates no image pull secret",
                         "drop them, or replay without --dry-run")


def _here(request: Any, settings: Any, login: tuple[str | None, bool], as_json: bool) -> int:
    """The replay on this host's engine, rendered."""
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table, explanations_text
    from envlock.operations.replay import replay_here

    tracker = open_tracker()
    engine = engine_for_run(tracker, request.run_id, *login)
    result = replay_here(request, engine=engine, tracker=tracker, config=settings,
                         notify=out.notify, output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {request.run_id}: exit {result.exit_code}"
             + (f", replay run {result.replay_run_id}" if result.replay_run_id else "")]
    lines += [f"input changed: {text}" for text in result.inputs_changed]
    if result.relay:
        lines.append(result.relay.summary())
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    lines += explanations_text(result.explanations)
    return out.emit(result.to_dict(), "\n".join(lines), result.exit_code)


def _repeated(request: Any, times: int, settings: Any, login: tuple[str | None, bool],
              as_json: bool) -> int:
    """--repeat N on this host's engine: N replays, classified; the experiment's exit code."""
    from envlock.cli import output as out
    from envlock.cli.render import repeat_text
    from envlock.operations.repeat import replay_repeated

    tracker = open_tracker()
    engine = engine_for_run(tracker, request.run_id, *login)
    result = replay_repeated(request, times, engine=engine, tracker=tracker, config=settings,
                             notify=out.notify, output=out.passthrough(as_json))
    for warning in result.results[0].warnings if result.results else ():
        out.warn(warning)
    return out.emit(result.to_dict(), repeat_text(result), result.exit_code)


def _on_kubernetes(request: Any, options: Any, settings: Any, *, dry_run: bool, detach: bool,
                   as_json: bool) -> int:
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table, explanations_text
    from envlock.model import yamlout
    from envlock.operations import kube, replayplan

    tracker = open_tracker()
    spec, context = replayplan.kubernetes(request, tracker=tracker, config=settings)
    if dry_run:
        plan = kube.plan(spec, context, tracker=tracker, options=options)
        for warning in plan.warnings:
            out.warn(warning)
        return out.emit(plan.to_dict(), yamlout.dump(plan.manifest))
    if detach:
        return _submitted(spec, context, tracker, options)
    result = kube.replay_on_kubernetes(spec, context, tracker=tracker, options=options,
                                       output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {spec.run_id} on kubernetes (job {result.job}): exit "
             f"{result.exit_code}, replay run {result.replay_run_id}"]
    lines += [f"input changed: {text}" for text in result.inputs_changed]
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    lines += explanations_text(result.explanations)
    return out.emit(result.to_dict(), "\n".join(lines), result.exit_code)


def _submitted(spec: Any, context: Any, tracker: Any, options: Any) -> int:
    """--detach on Kubernetes: the Job is submitted and the replay run recorded; a later
    `envlock verify --replay REPLAY_RUN` follows it to its end and concludes it."""
    from envlock.cli import output as out
    from envlock.operations import kube

    replay_id, job, verdict = kube.submit(spec, context, tracker=tracker, options=options)
    for warning in (*verdict.warnings, *verdict.problems):
        out.warn(warning)
    name = f"{job.namespace}/{job.name}"
    return out.emit({"original_run_id": spec.run_id, "replay_run_id": replay_id, "job": name,
                     "on": "kubernetes", "detached": True},
                    f"replay of {spec.run_id} submitted as Job {name}, replay run {replay_id}; "
                    f"conclude it with: envlock verify --replay {replay_id}")


def _detach(run_id: str, password: str | None) -> int:
    """Re-run this same command without --detach in the background; print where."""
    import sys

    from envlock.cli import output as out
    from envlock.operations.replay import detach

    argv = [a for a in sys.argv[1:] if a not in ("--detach", "--json")]  # the log is for people
    pid, log = detach(argv, run_id, password)
    return out.emit({"pid": pid, "log": log},
                    f"replay of {run_id} running in the background (pid {pid}); "
                    f"output: {log}; follow it with: envlock lineage {run_id}")


def lineage_command(
    run_id: Annotated[str, typer.Argument(help="An original (captured) MLflow run.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run's env digest and image, and every replay with its verdict."""
    from envlock.cli import output as out

    out.begin("lineage", as_json)
    tracker = open_tracker()
    run = tracker.run(run_id)
    replays = tracker.replays_of(run)
    tags = run.envlock_tags()
    result: dict[str, Any] = {
        "run_id": run.run_id, "env_digest": tags.get(runrecord.ENV_DIGEST),
        "image": tags.get(runrecord.IMAGE),
        "inputs": {"pinned": tags.get(runrecord.INPUTS_PINNED),
                   "artifact": tags.get(runrecord.INPUTS)},
              "replays": [{"run_id": r.run_id, "status": r.status,
                           "verdict": r.tags.get(runrecord.VERDICT),
                           "exit_code": r.tags.get(runrecord.EXIT_CODE),
                           "failure": r.tags.get(runrecord.FAILURE),
                           "inputs_changed": r.tags.get(runrecord.INPUTS_CHANGED),
                           **_job_of(r.tags)} for r in replays]}
    lines = [f"run {run.run_id} ({run.name})",
             f"  env_digest  {result['env_digest'] or '- (not captured)'}",
             f"  image       {result['image'] or '-'}",
             *([f"  inputs      {tags[runrecord.INPUTS_PINNED]}"
                f"{' at ' + tags[runrecord.INPUTS] if tags.get(runrecord.INPUTS) else ''}"]
               if tags.get(runrecord.INPUTS_PINNED) else []),
             f"  replays     {len(replays)}"]
    for replay in result["replays"]:
        replay["runs"] = [{"original_run_id": c.tags.get(runrecord.REPLAY_OF),
                           "replay_run_id": c.run_id, "name": c.name}
                          for c in tracker.replay_children(replay["run_id"])]
        job = f"  job {replay['job']} ({replay['job_state']})" if replay.get("job") else ""
        if replay.get("job") and replay["job_state"] != "concluded":
            job += f"; conclude: envlock verify --replay {replay['run_id']}"
        lines.append(f"    {replay['run_id']}  {replay['status']:<9} "
                     f"{replay['verdict'] or replay['failure'] or '-'}{job}")
        if replay.get("inputs_changed"):
            lines.append(f"      inputs changed: {replay['inputs_changed']}")
        lines += [f"      {c['original_run_id'] or '(unmatched)'} -> {c['replay_run_id']}  "
                  f"{c['name']}" for c in replay["runs"]]
    raise typer.Exit(out.emit(result, "\n".join(lines)))


def _job_of(tags: dict[str, str]) -> dict[str, str]:
    """A Kubernetes replay's Job and, while it has no verdict, the Job's state now."""
    job = tags.get(runrecord.KUBERNETES_JOB)
    if not job:
        return {}
    if tags.get(runrecord.VERDICT) or tags.get(runrecord.FAILURE):
        return {"job": job, "job_state": "concluded"}
    from envlock.errors import EnvlockError

    try:
        from envlock.adapters.kube import job_state

        state = job_state(*job.split("/", 1))
    except EnvlockError as exc:
        state = f"unknown: {exc.message}"
    return {"job": job, "job_state": state}


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
    app.command("lineage")(lineage_command)
