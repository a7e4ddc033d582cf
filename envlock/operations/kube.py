"""``envlock replay RUN_ID --on kubernetes``: the run's pinned image as a batch/v1 Job.

The Job is rendered purely (:mod:`envlock.model.kubejob`) and submitted and followed
through the cluster client (:mod:`envlock.adapters.kube`). Unlike a local replay there is
no private file store to relay: the experiment's own MLflow logs straight into the replay
run that envlock creates before submitting (``MLFLOW_TRACKING_URI`` + ``MLFLOW_RUN_ID``),
so the tracking store must be a server the pods can reach.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from envlock.adapters.kube import (
    delete_job,
    ensure_secret,
    follow_job,
    load_client,
    node_preflight,
    submit_job,
)
from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError, Interrupted, UsageError
from envlock.model.compare import MetricPolicy
from envlock.model.compat import Verdict
from envlock.model.kubejob import (
    JobSpec,
    check_name,
    job_manifest,
    job_name,
    parse_env,
    parse_gpu_count,
    parse_node_selector,
    parse_toleration,
    pull_secret_manifest,
    tracking_uri_problem,
)
from envlock.model.redact import strip_url_credentials
from envlock.operations.replay import ReplayError, ReplayResult, conclude, to_stdout
from envlock.operations.targets import captured

FAILURE_TAG = "envlock.failure"  # why a replay Job failed around the experiment
JOB_TAG = "envlock.kubernetes.job"  # NAMESPACE/NAME of a replay run's Job


@dataclass(frozen=True)
class KubeOptions:
    """What ``envlock replay --on kubernetes`` was asked for (raw CLI values)."""

    namespace: str = "default"
    gpus: str | None = None
    node_selector: tuple[str, ...] = ()
    tolerations: tuple[str, ...] = ()
    image_pull_secret: str | None = None
    env: tuple[str, ...] = ()
    env_from_secrets: tuple[str, ...] = ()
    command: str | None = None
    shm_size: str | None = None  # raw --shm-size / --cpus / --memory
    cpus: str | None = None
    memory: str | None = None
    # (user, password) from --registry-username/--registry-password-stdin; else the Docker
    # config or its credential helper is asked for the image's registry
    registry_credentials: tuple[str, str] | None = field(default=None, repr=False)


@dataclass
class KubeReplayResult(ReplayResult):
    job: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "on": "kubernetes", "job": self.job}


@dataclass(frozen=True)
class Plan:
    """A replay Job worked out from a run, before anything is created."""

    run: Any
    locked: dict[str, Any]
    spec: JobSpec
    warnings: tuple[str, ...] = ()

    @property
    def manifest(self) -> dict[str, Any]:
        return job_manifest(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.spec.run_id, "job": f"{self.spec.namespace}/{self.spec.name}",
                "manifest": self.manifest, "warnings": list(self.warnings)}


def plan(run_id: str, *, tracker: TrackerLike, options: KubeOptions) -> Plan:
    """Read the run and its lock, parse the options; creates and writes nothing."""


    lock, run = captured(tracker, run_id, image=True)
    image = run.tags["envlock.image"]
    if "@sha256:" not in image:
        raise ReplayError(f"image {image} of run {run_id} is not pinned in a registry",
                          "a cluster pulls images: capture with a --registry it can reach")
    uri = strip_url_credentials(tracker.uri) or tracker.uri  # never printed with a password
    warnings = [tracking_uri_problem(uri) or ""]
    if uri != tracker.uri:
        warnings.append("the tracking URI's credentials are left out of the Job; pass them "
                        "with --env-from-secret")
    original = lock.runtime.get("command")
    if not options.command and not original:
        raise UsageError(f"run {run_id} recorded no command", "pass --command")
    env = parse_env(options.env)
    given = _resources_for(lock, options, env)
    spec = JobSpec(
        name=job_name(run_id), run_id=run_id, image=image, tracking_uri=uri,
        shm_size=given.shm_size, cpus=given.cpus, memory=given.mem_limit,
        namespace=check_name("--namespace", options.namespace, label=True),
        gpus=parse_gpu_count(options.gpus, len(lock.gpu.get("devices") or [])),
        command=options.command, original_command=original, env={**given.env, **env},
        env_from_secrets=tuple(check_name("--env-from-secret", s)
                               for s in options.env_from_secrets),
        node_selector=parse_node_selector(options.node_selector),
        tolerations=tuple(parse_toleration(t) for t in options.tolerations),
        image_pull_secret=options.image_pull_secret and check_name(
            "--image-pull-secret", options.image_pull_secret))
    locked = {"frameworks": lock.frameworks, "gpu": lock.gpu}
    return Plan(run=run, locked=locked, spec=spec, warnings=tuple(w for w in warnings if w))


def _resources_for(lock: Any, options: KubeOptions, env: Mapping[str, str]) -> Any:
    """shm, CPU and memory for the pod: the node is not known before scheduling, so the
    replay side is only what --cpus says (thread counts follow it, as locally)."""
    from envlock.model import resources

    shm, cpus, memory = resources.parse_flags(options.shm_size, options.cpus, options.memory)
    return resources.decide(lock.host, None, shm_size=shm, cpus=cpus, memory=memory,
                            recorded_env=lock.runtime.get("env"), given_env=env)


def _check_tracking(uri: str) -> None:
    problem = tracking_uri_problem(uri)
    hint = ("run `mlflow server` where the cluster can reach it and set MLFLOW_TRACKING_URI "
            "to its URL; --dry-run prints the Job anyway")
    if problem:
        raise UsageError(problem, hint)
    parts = urlsplit(uri)
    if parts.username or parts.password:
        raise UsageError(f"the tracking URI {parts.scheme}://…@{parts.hostname} carries "
                         "credentials; they would be stored in the Job in plain text",
                         "put MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or "
                         "MLFLOW_TRACKING_TOKEN) in a Secret and pass --env-from-secret NAME")


def pull_secret(api: Any, spec: JobSpec, options: KubeOptions) -> str | None:
    """The image pull secret the Job uses: --image-pull-secret as given; else one envlock
    creates (or reuses) from the registry credentials it has for the image's registry;
    None for a registry it has no credentials for (public, or the nodes' own)."""
    from envlock.adapters.engine import registry_of
    from envlock.adapters.registry import docker_credentials

    if spec.image_pull_secret:
        return spec.image_pull_secret
    registry = registry_of(spec.image)
    credentials = options.registry_credentials or docker_credentials(registry)
    if not credentials:
        return None
    return ensure_secret(api, pull_secret_manifest(spec.namespace, registry, *credentials))


def _failed(tracker: TrackerLike, replay_id: str, exc: BaseException) -> None:
    """Never leave a replay run RUNNING: FAILED, with the reason as ``envlock.failure``
    (an infrastructure failure is not a verdict on the experiment)."""
    reason = exc.message if isinstance(exc, EnvlockError) else type(exc).__name__
    with contextlib.suppress(Exception):  # the original error matters more
        tracker.set_tags(replay_id, {FAILURE_TAG: reason[:5000]})
    tracker.finish(replay_id, False)
    if isinstance(exc, Interrupted):
        exc.outcome = f"replay run {replay_id} was marked FAILED"


def submit(run_id: str, *, tracker: TrackerLike, options: KubeOptions, force: bool = False,
           api: Any = None) -> tuple[str, JobSpec, Verdict]:
    """Pre-flight on node labels, create the replay run, submit its Job; nothing waits.
    ``(replay run id, the Job's spec, the pre-flight verdict)``."""
    _check_tracking(tracker.uri)
    draft = plan(run_id, tracker=tracker, options=options)
    api = api or load_client()
    verdict = node_preflight(api, draft.locked, draft.spec.gpus, draft.spec.node_selector)
    if not verdict.ok and not force:
        raise ReplayError(f"no node can run the image: {'; '.join(verdict.problems)}",
                          "pick nodes with --node-selector, or --force to try anyway")
    run = draft.run
    secret = pull_secret(api, draft.spec, options)
    replay_id = tracker.create_run(run.experiment_id, f"replay of {run.name or run_id}", {
        "envlock.replay_of": run_id, "envlock.image": draft.spec.image,
        "envlock.replayed_on": "kubernetes"})
    spec = replace(draft.spec, replay_run_id=replay_id, name=job_name(run_id, replay_id),
                   image_pull_secret=secret, experiment_id=str(run.experiment_id))
    try:
        tracker.set_tags(replay_id, {JOB_TAG: f"{spec.namespace}/{spec.name}"})
        submit_job(job_manifest(spec), api)
    except BaseException as exc:
        _failed(tracker, replay_id, exc)
        raise
    return replay_id, spec, verdict


def replay_on_kubernetes(run_id: str, *, tracker: TrackerLike, options: KubeOptions,
                         force: bool = False, policy: MetricPolicy | None = None,
                         api: Any = None,
                         output: Callable[[bytes], None] | None = None,
                         compare_files: bool = False) -> KubeReplayResult:
    """Submit the replay Job, follow it to its end, compare metrics, tag the verdict."""
    _check_tracking(tracker.uri)  # before the cluster is even looked for
    api = api or load_client()
    replay_id, spec, verdict = submit(run_id, tracker=tracker, options=options, force=force,
                                      api=api)
    try:
        result = conclude_replay(replay_id, tracker=tracker, policy=policy, api=api,
                                 output=output, compare_files=compare_files)
    except BaseException:
        delete_job(spec.namespace, spec.name, api)  # interrupted or failed: not left behind
        raise
    result.warnings = [*verdict.warnings, *verdict.problems]  # problems: forced
    return result


def conclude_replay(replay_id: str, *, tracker: TrackerLike,
                    policy: MetricPolicy | None = None, api: Any = None,
                    output: Callable[[bytes], None] | None = None,
                    compare_files: bool = False) -> KubeReplayResult:
    """Follow a submitted replay Job (running or done) to its end, then compare the run
    trees and tag the verdict: what ``replay --on kubernetes`` does after submitting, and
    what ``verify --replay`` does for a ``--detach``-ed one."""
    replay = tracker.run(replay_id)
    job, original = replay.tags.get(JOB_TAG), replay.tags.get("envlock.replay_of")
    if not job or not original:
        raise UsageError(f"run {replay_id} is not a replay Job envlock submitted",
                         "pass the replay run id that `replay --on kubernetes --detach` printed")
    done = replay.tags.get("envlock.verdict") or replay.tags.get(FAILURE_TAG)
    if done:
        raise UsageError(f"replay run {replay_id} is concluded already: {done}",
                         f"see envlock lineage {original}")
    namespace, name = job.split("/", 1)
    run = tracker.run(original)
    try:
        code = follow_job(namespace, name, output=output or to_stdout, api=api)
        comparison = conclude(tracker, run, replay_id, code, policy,
                              compare_files=compare_files)
    except BaseException as exc:
        _failed(tracker, replay_id, exc)
        raise
    return KubeReplayResult(original_run_id=original, replay_run_id=replay_id,
                            image=replay.tags.get("envlock.image", ""), exit_code=code,
                            comparison=comparison, job=job)


# ------------------------------------------------------------------ a verification sweep

@dataclass(frozen=True)
class SweepItem:
    """One run of a sweep: its replay, verdict, or the infrastructure error that stopped it."""

    run_id: str
    result: KubeReplayResult | None = None
    error: str | None = None

    @property
    def reproduced(self) -> bool:
        return bool(self.result and self.result.exit_code == 0 and self.result.comparison
                    and self.result.comparison.reproduced)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "reproduced": self.reproduced, "error": self.error,
                "replay": self.result.to_dict() if self.result else None}


def sweep(experiment: str, *, last: int, parallel: int, tracker: TrackerLike,
          options: KubeOptions, policy: MetricPolicy | None = None) -> list[SweepItem]:
    """Replay the ``last`` newest captured runs of ``experiment`` as Jobs, at most
    ``parallel`` at a time; one item per run, in the runs' order (newest first). An
    infrastructure failure of one run is recorded on it, the others go on."""
    from concurrent.futures import ThreadPoolExecutor

    if last < 1 or parallel < 1:
        raise UsageError("--last and --parallel must be at least 1")
    _check_tracking(tracker.uri)
    runs = tracker.last_captured(experiment, last)  # type: ignore[attr-defined]
    if not runs:
        raise UsageError(f"experiment {experiment!r} has no captured run with a pinned image",
                         "capture runs with envlock capture --registry …")

    def one(run_id: str) -> SweepItem:
        try:
            return SweepItem(run_id, replay_on_kubernetes(
                run_id, tracker=tracker, options=options, policy=policy, output=_quiet))
        except EnvlockError as exc:
            return SweepItem(run_id, error=exc.message)

    stdout = sys.stdout
    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return list(pool.map(one, [r.run_id for r in runs]))
    finally:  # the tracker's redirect_stdout is process-wide: threads interleave it
        sys.stdout = stdout


def _quiet(chunk: bytes) -> None:
    del chunk  # parallel Jobs' logs would interleave; each stays in its pod and replay run
