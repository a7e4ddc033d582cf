"""``envlock replay RUN_ID --on kubernetes``: the run's pinned image as a batch/v1 Job.

The Job is rendered purely (:mod:`envlock.model.kubejob`) and submitted and followed
through the cluster client (:mod:`envlock.adapters.kube`). Unlike a local replay there is
no private file store to relay: the experiment's own MLflow logs straight into the replay
run that envlock creates before submitting (``MLFLOW_TRACKING_URI`` + ``MLFLOW_RUN_ID``),
so the tracking store must be a server the pods can reach.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
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
from envlock.errors import EnvlockError, UsageError
from envlock.model import runrecord
from envlock.model.compat import Verdict
from envlock.model.explanations import Facts
from envlock.model.kubejob import (
    JobSpec,
    check_name,
    job_manifest,
    job_name,
    parse_node_selector,
    parse_toleration,
    pull_secret_manifest,
    tracking_uri_problem,
)
from envlock.model.redact import strip_url_credentials
from envlock.model.replayspec import Checks, ReplaySpec
from envlock.operations.inputimage import derive, describe
from envlock.operations.replay import (
    FAILURE_TAG,
    ReplayError,
    ReplayResult,
    Tail,
    conclude,
    fail_replay,
    to_stdout,
)
from envlock.operations.replayplan import Context, ReplayRequest

if TYPE_CHECKING:
    from envlock.config import Config

__all__ = ["FAILURE_TAG", "JOB_TAG", "KubeOptions", "KubeReplayResult", "Plan", "SweepItem",
           "conclude_replay", "plan", "pull_secret", "replay_on_kubernetes", "submit", "sweep"]

JOB_TAG = runrecord.KUBERNETES_JOB  # NAMESPACE/NAME of a replay run's Job


@dataclass(frozen=True)
class KubeOptions:
    """What only a Job has (raw CLI values); the container is the replay's spec."""

    namespace: str = "default"
    node_selector: tuple[str, ...] = ()
    tolerations: tuple[str, ...] = ()
    image_pull_secret: str | None = None
    env_from_secrets: tuple[str, ...] = ()
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


def plan(spec: ReplaySpec, context: Context, *, tracker: TrackerLike, options: KubeOptions
         ) -> Plan:
    """The Job of ``spec`` (made by :func:`envlock.operations.replayplan.kubernetes`) with
    the options only a Job has, checked; creates and writes nothing."""
    uri = strip_url_credentials(tracker.uri) or tracker.uri  # never printed with a password
    warnings = [tracking_uri_problem(uri) or ""]
    if uri != tracker.uri:
        warnings.append("the tracking URI's credentials are left out of the Job; pass them "
                        "with --env-from-secret")
    job = JobSpec(
        name=job_name(spec.run_id), replay=spec, tracking_uri=uri,
        namespace=check_name("--namespace", options.namespace, label=True),
        original_command=context.original_command,
        env_from_secrets=tuple(check_name("--env-from-secret", s)
                               for s in options.env_from_secrets),
        node_selector=parse_node_selector(options.node_selector),
        tolerations=tuple(parse_toleration(t) for t in options.tolerations),
        image_pull_secret=options.image_pull_secret and check_name(
            "--image-pull-secret", options.image_pull_secret),
        inputs_image=describe(spec.image, context.copied) if spec.inputs else None)
    job_manifest(job)  # what cannot be a Job fails here, before anything is created
    return Plan(run=context.run, locked=dict(context.locked), spec=job,
                warnings=tuple(w for w in warnings if w))


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


def submit(spec: ReplaySpec, context: Context, *, tracker: TrackerLike, options: KubeOptions,
           api: Any = None) -> tuple[str, JobSpec, Verdict]:
    """Pre-flight on node labels, create the replay run, submit its Job; nothing waits.
    ``(replay run id, the Job's spec, the pre-flight verdict)``."""
    _check_tracking(tracker.uri)
    draft = plan(spec, context, tracker=tracker, options=options)
    api = api or load_client()
    verdict = node_preflight(api, draft.locked, draft.spec.gpus, draft.spec.node_selector)
    if not verdict.ok and not context.force:
        raise ReplayError(f"no node can run the image: {'; '.join(verdict.problems)}",
                          "pick nodes with --node-selector, or --force to try anyway")
    run, draft_spec, tags = draft.run, *_with_inputs(draft.spec, context, options)
    secret = pull_secret(api, draft_spec, options)
    replay_id = tracker.create_run(run.experiment_id, f"replay of {run.name or run.run_id}", {
        runrecord.REPLAY_OF: run.run_id, runrecord.IMAGE: draft_spec.image,
        runrecord.REPLAYED_ON: "kubernetes", **tags})
    job = replace(draft_spec, replay_run_id=replay_id, name=job_name(run.run_id, replay_id),
                  image_pull_secret=secret, experiment_id=str(run.experiment_id))
    try:
        tracker.set_tags(replay_id, {JOB_TAG: f"{job.namespace}/{job.name}"})
        tracker.log_text(replay_id, runrecord.REPLAY_GIVEN_ARTIFACT, given(spec))
        submit_job(job_manifest(job), api)
    except BaseException as exc:
        fail_replay(tracker, replay_id, exc, Tail(), tag_reason=True)
        raise
    return replay_id, job, verdict


def _with_inputs(job: JobSpec, context: Context, options: KubeOptions
                 ) -> tuple[JobSpec, dict[str, str]]:
    """The Job with its inputs image derived and pushed (:mod:`envlock.operations.
    inputimage`), and the replay run's tags about its inputs."""
    tags = {runrecord.INPUTS_CHANGED: "; ".join(context.inputs_changed)[:5000]} \
        if context.inputs_changed else {}
    if not job.replay.inputs:
        return job, tags
    derived = derive(job.image, context.copied, context.inputs_artifact,
                     credentials=options.registry_credentials)
    return replace(job, inputs_image=derived.image), {**tags,
                                                      runrecord.INPUTS_IMAGE: derived.image}


def replay_on_kubernetes(spec: ReplaySpec, context: Context, *, tracker: TrackerLike,
                         options: KubeOptions, api: Any = None,
                         output: Callable[[bytes], None] | None = None) -> KubeReplayResult:
    """Submit the replay Job of ``spec``, follow it to its end, compare the run trees by
    ``spec.checks``, tag the verdict."""
    from envlock.operations.explain import replay_facts

    _check_tracking(tracker.uri)  # before the cluster is even looked for
    api = api or load_client()
    replay_id, job, verdict = submit(spec, context, tracker=tracker, options=options, api=api)
    try:
        result = conclude_replay(replay_id, tracker=tracker, checks=spec.checks, api=api,
                                 output=output, facts=replay_facts(spec, context, None))
    except BaseException:
        delete_job(job.namespace, job.name, api)  # interrupted or failed: not left behind
        raise
    result.warnings = [*verdict.warnings, *verdict.problems, *result.warnings]  # forced
    result.inputs_changed = list(context.inputs_changed)
    return result


def conclude_replay(replay_id: str, *, tracker: TrackerLike, checks: Checks | None = None,
                    api: Any = None, output: Callable[[bytes], None] | None = None,
                    facts: Facts | None = None) -> KubeReplayResult:
    """Follow a submitted replay Job (running or done) to its end, then compare the run
    trees and tag the verdict: what ``replay --on kubernetes`` does after submitting, and
    what ``verify --replay`` does for a ``--detach``-ed one. Then, as a local replay does,
    the ranked explanations when it did not reproduce (from ``facts``: the original's and
    the Job's, when the caller has them) and ``envlock/report.html`` on the replay run."""
    replay = tracker.run(replay_id)
    job, original = replay.tags.get(JOB_TAG), replay.tags.get(runrecord.REPLAY_OF)
    if not job or not original:
        raise UsageError(f"run {replay_id} is not a replay Job envlock submitted",
                         "pass the replay run id that `replay --on kubernetes --detach` printed")
    done = replay.tags.get(runrecord.VERDICT) or replay.tags.get(FAILURE_TAG)
    if done:
        raise UsageError(f"replay run {replay_id} is concluded already: {done}",
                         f"see envlock lineage {original}")
    namespace, name = job.split("/", 1)
    run, tail = tracker.run(original), Tail()
    try:
        code = follow_job(namespace, name, output=tail.tee(output or to_stdout), api=api)
        comparison = conclude(tracker, run, replay_id, code, checks or Checks())
    except BaseException as exc:
        fail_replay(tracker, replay_id, exc, tail, tag_reason=True)
        raise
    result = KubeReplayResult(original_run_id=original, replay_run_id=replay_id,
                              image=replay.tags.get(runrecord.IMAGE, ""), exit_code=code,
                              comparison=comparison, job=job)
    if facts is None and not (code == 0 and comparison is not None
                              and comparison.reproduced):
        facts = detached_facts(tracker, replay_id, original)
    return _explained(result, tracker, facts, (checks or Checks()).policy)


def given(spec: ReplaySpec) -> str:
    """What a Job was given beyond the original's recorded facts (``--command``, the
    ``--env`` values, secret-named ones left out), kept on the replay run as
    ``envlock/replay-given.json`` for a verdict concluded later (``verify --replay``)."""
    from envlock.model.redact import is_secret_name
    from envlock.operations.replayplan import BASE_ENV

    env = {k: v for k, v in spec.env.items() if k not in BASE_ENV and not is_secret_name(k)}
    return json.dumps({"command": spec.command, "env": env}, indent=1, sort_keys=True)


def detached_facts(tracker: TrackerLike, replay_id: str, original: str) -> Facts | None:
    """The facts to explain a detached replay with: the original's lock and tags, and
    what its Job was given (:func:`given`; a Job submitted before it was recorded had
    nothing beyond the defaults, as far as can be known). None when the original's lock
    cannot be read: the verdict stands, unexplained."""
    from envlock.operations.explain import replay_facts
    from envlock.operations.targets import captured

    try:
        lock, run = captured(tracker, original)
    except EnvlockError:
        return None
    raw = tracker.artifact_bytes(replay_id, f"{runrecord.ARTIFACT_DIR}/"
                                 f"{runrecord.REPLAY_GIVEN_ARTIFACT}", 1 << 20)
    recorded = json.loads(raw) if raw else {}
    spec = ReplaySpec(run_id=original, image=run.tags.get(runrecord.IMAGE, ""),
                      command=recorded.get("command"), env=dict(recorded.get("env") or {}))
    context = Context(run=run, original_command=lock.runtime.get("command"),
                      locked={"frameworks": lock.frameworks, "gpu": lock.gpu,
                              "host": lock.host, "runtime": lock.runtime})
    return replay_facts(spec, context, None)


def _explained(result: KubeReplayResult, tracker: TrackerLike, facts: Facts | None,
               policy: Any) -> KubeReplayResult:
    """What a local replay adds to its verdict: the explanations (recorded on the replay
    run, which the report reads), then the HTML report."""
    from envlock.operations.explain import explain_replay
    from envlock.operations.replay import log_report

    replay_id = str(result.replay_run_id)
    reproduced = result.exit_code == 0 and bool(result.comparison
                                                and result.comparison.reproduced)
    if facts is not None and not reproduced:
        result.explanations = explain_replay(tracker, [replay_id], facts)
    if result.comparison is not None:
        result.warnings += log_report(tracker, result.original_run_id, [replay_id], policy)
    return result


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
          config: Config, request: ReplayRequest, options: KubeOptions) -> list[SweepItem]:
    """Replay the ``last`` newest captured runs of ``experiment`` as Jobs, at most
    ``parallel`` at a time, each with the container settings of ``request`` (its run id
    aside); one item per run, in the runs' order (newest first). An infrastructure failure
    of one run is recorded on it, the others go on."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.operations import replayplan

    if last < 1 or parallel < 1:
        raise UsageError("--last and --parallel must be at least 1")
    _check_tracking(tracker.uri)
    runs = tracker.last_captured(experiment, last)  # type: ignore[attr-defined]
    if not runs:
        raise UsageError(f"experiment {experiment!r} has no captured run with a pinned image",
                         "capture runs with envlock capture --registry …")

    def one(run_id: str) -> SweepItem:
        try:
            spec, context = replayplan.kubernetes(replace(request, run_id=run_id),
                                                  tracker=tracker, config=config)
            return SweepItem(run_id, replay_on_kubernetes(
                spec, context, tracker=tracker, options=options, output=_quiet))
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
