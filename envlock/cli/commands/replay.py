"""``envlock replay`` and ``envlock lineage``."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from envlock.cli.commands.build import (
    PasswordStdinOpt,
    RegistryUserOpt,
    engine_for_run,
    read_credentials,
)
from envlock.cli.commands.lock import JsonOpt

GpusOpt = Annotated[str | None, typer.Option(
    "--gpus", help="all | none | N | device=0,1 (default: all when the run had GPUs and "
    "this host has them).")]
ToleranceOpt = Annotated[str | None, typer.Option(
    "--tolerance", help="Metric tolerance: 1e-6 (absolute), 0.5% (relative), or "
    "abs=…,rel=…. Default: the config's tolerance, else exact (per-metric tolerances come "
    "from the config).")]
ShmSizeOpt = Annotated[str | None, typer.Option(
    "--shm-size", help="Size of the container's /dev/shm (64m, 2g, bytes). Default: as "
    "large as on the original host (PyTorch DataLoader workers pass batches through it), "
    "else this host's.")]
CpusOpt = Annotated[str | None, typer.Option(
    "--cpus", help="Limit the container to this many CPUs (4, 1.5), like docker run --cpus. "
    "When the CPU count differs from the original's, thread counts (OMP_NUM_THREADS, …) are "
    "set to the original's unless recorded or given with --env.")]
MemoryOpt = Annotated[str | None, typer.Option(
    "--memory", help="Limit the container's memory (16g, 512m, bytes), like docker run "
    "--memory.")]
MetricOpt = Annotated[list[str] | None, typer.Option(
    "--metric", help="Compare only these metrics (repeatable; in every run of the tree).")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Gate on every metric: also those that measure time, throughput or "
    "the machine (*_time, *_runtime, *_per_second, system/*, …), which are otherwise "
    "shown but not gated (config: ungated_metrics, gated_metrics).")]
CompareArtifactsOpt = Annotated[bool, typer.Option(
    "--compare-artifacts", help="Also compare every artifact (and logged model file) of "
    "every run by sha256: identical / differs / missing; any but identical fails.")]


class Target(str, Enum):
    local = "local"
    kubernetes = "kubernetes"


TOLERATION_HELP = ("Kubernetes: tolerate a node taint (repeatable): KEY=VALUE:EFFECT, "
                   "KEY:EFFECT (any value) or KEY:Exists (any value and effect); EFFECT is "
                   "NoSchedule, PreferNoSchedule or NoExecute.")


def replay_command(
    run_id: Annotated[str, typer.Argument(help="The captured MLflow run to replay.")],
    gpus: GpusOpt = None,
    shm_size: ShmSizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    mount: Annotated[list[str] | None, typer.Option("--mount", help="SRC:DST bind mount "
                                                       "(repeatable).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="K=V for the container "
                                                     "(repeatable).")] = None,
    command: Annotated[str | None, typer.Option("--command", help="Run this instead of "
                                                   "the captured command.")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not create a replay run.")
                        ] = False,
    tolerance: ToleranceOpt = None,
    metric: MetricOpt = None,
    strict: StrictOpt = False,
    compare_artifacts: CompareArtifactsOpt = False,
    network: Annotated[str, typer.Option("--network", help="Container network (none, host, "
                                         "bridge).")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Run even when the pre-flight GPU/"
                                        "driver checks fail.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Run the whole replay in the "
                                         "background; its output goes to a log file.")] = False,
    on: Annotated[Target, typer.Option(
        "--on", help="Where to run it: this host's engine, or a Job on the current Kubernetes "
        "cluster (there --gpus takes a number; default: as many as the run had).")
    ] = Target.local,
    namespace: Annotated[str, typer.Option("--namespace", help="Kubernetes: the Job's "
                                           "namespace.")] = "default",
    node_selector: Annotated[list[str] | None, typer.Option(
        "--node-selector", help="Kubernetes: KEY=VALUE node label the pod must land on "
        "(repeatable).")] = None,
    toleration: Annotated[list[str] | None, typer.Option("--toleration", help=TOLERATION_HELP)
                          ] = None,
    image_pull_secret: Annotated[str | None, typer.Option(
        "--image-pull-secret", help="Kubernetes: Secret with the registry credentials.")
    ] = None,
    env_from_secret: Annotated[list[str] | None, typer.Option(
        "--env-from-secret", help="Kubernetes: a Secret whose keys become environment "
        "variables (tokens, passwords; repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Kubernetes: print the Job as "
                                          "YAML; create and submit nothing.")] = False,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run a captured experiment from its pinned image and compare its metrics.

    Pulls the image by digest, checks the host's GPUs and driver, runs it hardened, logs a
    replay run linked to the original: every run the experiment makes (child runs of a
    search too) is relayed with its params, metric histories, tags, datasets, artifacts
    and models, then compared with the original's tree (metrics, params; artifacts with
    --compare-artifacts); metrics of time, throughput or the machine are shown but not
    gated unless --strict. Exits with the experiment's exit code. With
    --on kubernetes the image runs as a Job on the current cluster (pre-flight on its
    nodes' GPU labels); its MLflow logs straight into the replay run, so the tracking
    store must be a server the cluster can reach."""
    from envlock import config
    from envlock.adapters.tracking import Tracker
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table
    from envlock.model.resources import parse_flags
    from envlock.operations.replay import replay

    out.begin("replay", as_json)
    parse_flags(shm_size, cpus, memory)  # bad values fail before anything runs
    policy = config.load().metric_policy(tolerance, metric, strict)
    kube_flags = {"--namespace": namespace != "default", "--node-selector": node_selector,
                  "--toleration": toleration, "--image-pull-secret": image_pull_secret,
                  "--env-from-secret": env_from_secret, "--dry-run": dry_run}
    local_flags = {"--mount": mount, "--network": network != "none", "--no-track": no_track}
    _only_with(kube_flags if on is Target.local else local_flags, on)
    if detach and not dry_run and on is Target.local:
        credentials = read_credentials(registry_username, registry_password_stdin)
        raise typer.Exit(_detach(run_id, credentials[1] if credentials else None))
    if on is Target.kubernetes and dry_run and registry_password_stdin:
        from envlock.errors import UsageError

        raise UsageError("--registry-username/--registry-password-stdin are not used by "
                         "--dry-run: it creates no image pull secret",
                         "drop them, or replay without --dry-run")
    if on is Target.kubernetes:
        from envlock.operations.kube import KubeOptions

        options = KubeOptions(namespace=namespace, gpus=gpus, shm_size=shm_size, cpus=cpus,
                              memory=memory,
                              node_selector=tuple(node_selector or ()),
                              tolerations=tuple(toleration or ()),
                              image_pull_secret=image_pull_secret, env=tuple(env or ()),
                              env_from_secrets=tuple(env_from_secret or ()), command=command,
                              registry_credentials=_kube_credentials(registry_username,
                                                                     registry_password_stdin))
        raise typer.Exit(_on_kubernetes(run_id, options, dry_run=dry_run, detach=detach,
                                        force=force, policy=policy, as_json=as_json,
                                        compare_files=compare_artifacts))
    tracker = Tracker()
    engine = engine_for_run(tracker, run_id, registry_username, registry_password_stdin)
    result = replay(run_id, engine=engine, tracker=tracker, gpus=gpus,
                    shm_size=shm_size, cpus=cpus, memory=memory, notify=out.notify,
                    mounts=mount, env=env, command=command, track=not no_track, force=force,
                    policy=policy, network=network, compare_files=compare_artifacts,
                    output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {run_id}: exit {result.exit_code}"
             + (f", replay run {result.replay_run_id}" if result.replay_run_id else "")]
    if result.relay:
        lines.append(result.relay.summary())
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    raise typer.Exit(out.emit(result.to_dict(), "\n".join(lines), result.exit_code))


def _kube_credentials(username: str | None, password_stdin: bool) -> tuple[str, str] | None:
    """--registry-username/--registry-password-stdin on Kubernetes: the credentials of the
    image pull secret envlock creates in the namespace (never printed, never in the Job)."""
    from envlock.cli.commands.build import read_credentials

    return read_credentials(username, password_stdin)


def _only_with(flags: dict[str, Any], on: Target) -> None:
    from envlock.errors import UsageError

    other = "local" if on is Target.kubernetes else "kubernetes"
    for flag, given in flags.items():
        if given:
            raise UsageError(f"{flag} works only with --on {other}",
                             f"drop it, or replay with --on {other}")


def _on_kubernetes(run_id: str, options: Any, *, dry_run: bool, detach: bool, force: bool,
                   policy: Any, as_json: bool,
                   compare_files: bool = False) -> int:
    from envlock.adapters.tracking import Tracker
    from envlock.cli import output as out
    from envlock.cli.render import comparison_table
    from envlock.model import yamlout
    from envlock.operations import kube

    if dry_run:
        plan = kube.plan(run_id, tracker=Tracker(), options=options)
        for warning in plan.warnings:
            out.warn(warning)
        return out.emit(plan.to_dict(), yamlout.dump(plan.manifest))
    if detach:
        return _submitted(run_id, options, force)
    result = kube.replay_on_kubernetes(run_id, tracker=Tracker(), options=options, force=force,
                                       policy=policy, compare_files=compare_files,
                                       output=out.passthrough(as_json))
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"replay of {run_id} on kubernetes (job {result.job}): exit {result.exit_code}, "
             f"replay run {result.replay_run_id}"]
    if result.comparison:
        lines.append(comparison_table(result.comparison))
    return out.emit(result.to_dict(), "\n".join(lines), result.exit_code)


def _submitted(run_id: str, options: Any, force: bool) -> int:
    """--detach on Kubernetes: the Job is submitted and the replay run recorded; a later
    `envlock verify --replay REPLAY_RUN` follows it to its end and concludes it."""
    from envlock.adapters.tracking import Tracker
    from envlock.cli import output as out
    from envlock.operations import kube

    replay_id, spec, verdict = kube.submit(run_id, tracker=Tracker(), options=options,
                                           force=force)
    for warning in (*verdict.warnings, *verdict.problems):
        out.warn(warning)
    job = f"{spec.namespace}/{spec.name}"
    return out.emit({"original_run_id": run_id, "replay_run_id": replay_id, "job": job,
                     "on": "kubernetes", "detached": True},
                    f"replay of {run_id} submitted as Job {job}, replay run {replay_id}; "
                    f"conclude it with: envlock verify --replay {replay_id}")


def _detach(run_id: str, password: str | None) -> int:
    """Re-run this same command without --detach as a background process; print where.

    A password read from stdin here reaches the background process the same way, through
    a pipe: never its command line, its environment or a file."""
    import subprocess
    import tempfile

    from envlock.cli import output as out

    argv = [a for a in sys.argv[1:] if a not in ("--detach", "--json")]  # the log is for people
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the background process
        prefix=f"envlock-replay-{run_id[:12]}-", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-m", "envlock", *argv], stdout=log,
                               stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL if password is None else subprocess.PIPE,
                               start_new_session=True)
    if password is not None:
        assert process.stdin is not None
        with process.stdin:  # one line, far below a pipe's buffer: never blocks
            process.stdin.write(f"{password}\n".encode())
    log.close()
    return out.emit({"pid": process.pid, "log": log.name},
                    f"replay of {run_id} running in the background (pid {process.pid}); "
                    f"output: {log.name}; follow it with: envlock lineage {run_id}")


def lineage_command(
    run_id: Annotated[str, typer.Argument(help="An original (captured) MLflow run.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run's env digest and image, and every replay with its verdict."""
    from envlock.adapters.tracking import Tracker
    from envlock.cli import output as out

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
                           "exit_code": r.tags.get("envlock.exit_code"),
                           "failure": r.tags.get("envlock.failure"),
                           **_job_of(r.tags)} for r in replays]}
    lines = [f"run {run.run_id} ({run.name})",
             f"  env_digest  {result['env_digest'] or '- (not captured)'}",
             f"  image       {result['image'] or '-'}",
             f"  replays     {len(replays)}"]
    for replay in result["replays"]:
        replay["runs"] = [{"original_run_id": c.tags.get("envlock.replay_of"),
                           "replay_run_id": c.run_id, "name": c.name}
                          for c in tracker.replay_children(replay["run_id"])]
        job = f"  job {replay['job']} ({replay['job_state']})" if replay.get("job") else ""
        if replay.get("job") and replay["job_state"] != "concluded":
            job += f"; conclude: envlock verify --replay {replay['run_id']}"
        lines.append(f"    {replay['run_id']}  {replay['status']:<9} "
                     f"{replay['verdict'] or replay['failure'] or '-'}{job}")
        lines += [f"      {c['original_run_id'] or '(unmatched)'} -> {c['replay_run_id']}  "
                  f"{c['name']}" for c in replay["runs"]]
    raise typer.Exit(out.emit(result, "\n".join(lines)))


def _job_of(tags: dict[str, str]) -> dict[str, str]:
    """A Kubernetes replay's Job and, while it has no verdict, the Job's state now."""
    job = tags.get("envlock.kubernetes.job")
    if not job:
        return {}
    if tags.get("envlock.verdict") or tags.get("envlock.failure"):
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
