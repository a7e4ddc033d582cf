"""``envlock replay RUN_ID``: run a captured experiment again, exactly, and compare.

The engine and the tracker are passed in. The experiment's own MLflow calls write to a
private file store mounted into the container (``MLFLOW_TRACKING_URI=file:///…``),
whatever MLflow version the image holds; envlock then relays the whole run tree —
child runs, params, metric histories, tags, datasets, artifacts and logged models —
into the replay run of the real store with the host's MLflow (envlock.adapters.tracking.relay).
That keeps a months-old image working against today's store schema, for the embedded
SQLite store and a tracking server alike. The replay's tree is then compared with the
original's (envlock.model.compare.compare_tree): metrics and params of every matched run,
and with ``compare_artifacts`` every artifact by sha256.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.errors import EnvlockError, Interrupted, ReplayTimeout
from envlock.model import backend, runrecord
from envlock.model.compare import Comparison, compare_artifacts, compare_tree
from envlock.model.replayspec import Checks, Mount, ReplaySpec, docker_args
from envlock.model.runtree import RelayReport
from envlock.operations.replayplan import Context, ReplayError, ReplayRequest

if TYPE_CHECKING:
    from envlock.config import Config

__all__ = ["STORE_MOUNT", "FAILURE_TAG", "ReplayError", "ReplayResult", "Tail", "replay",
           "conclude", "fail_replay", "ensure_image", "to_stdout", "replay_here", "detach"]

STORE_MOUNT = "/envlock/mlruns"
FAILURE_TAG = runrecord.FAILURE  # why a replay run failed around the experiment
TIMED_OUT = "timed out"  # the verdict of a replay stopped by its --timeout


@dataclass
class ReplayResult:
    original_run_id: str
    replay_run_id: str | None
    image: str
    exit_code: int
    resources: dict[str, Any] | None = None  # what the container got (resources.Resources)
    comparison: Comparison | None = None
    warnings: list[str] = field(default_factory=list)
    relay: RelayReport | None = None
    explanations: tuple[Any, ...] = ()  # model.explanations, when not reproduced
    #: The inputs that differ from the run's, named first by the verdict: referenced
    #: inputs replayed with --allow-changed-inputs, MLflow datasets with another digest.
    inputs_changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return {"original_run_id": self.original_run_id, "replay_run_id": self.replay_run_id,
                "resources": self.resources,
                "image": self.image, "exit_code": self.exit_code, "ok": self.ok,
                "warnings": self.warnings, "inputs_changed": self.inputs_changed,
                "relay": self.relay.to_dict() if self.relay else None,
                "comparison": self.comparison.to_dict() if self.comparison else None,
                "explanations": [e.to_dict() for e in self.explanations]}


def ensure_image(engine: EngineLike, reference: str, run_id: str) -> str:
    """The pinned image, pulled if it is not local; its digest verified."""
    info = engine.image(reference)
    if info is None and "@sha256:" in reference:
        try:
            info = engine.pull(reference)
        except EnvlockError as exc:
            raise ReplayError(
                f"image {reference} of run {run_id} is gone from the registry and this "
                f"engine ({exc.message})", "rebuild it from the run's lock: envlock build "
                f"--from-run {run_id} --no-cache --registry REGISTRY/REPO") from exc
    if info is None:
        raise ReplayError(f"image {reference} of run {run_id} is not in this engine",
                          "it was never pushed; replay on the host that built it or rebuild "
                          "from the lockfile artifact with envlock build")
    repository, _, digest = reference.partition("@")
    if digest and info.digest_in(repository) != digest and info.id != digest:
        raise ReplayError(f"{reference} resolved to an image with another digest",
                          "the engine holds different content: remove it and retry")
    return str(info.id)


def record_host(tracker: TrackerLike, replay_id: str, engine: EngineLike,
                context: Context) -> None:
    """Log the replay host (``envlock/replay-host.yaml`` and ``envlock.replay_host.*``
    tags) on the replay run, before the container runs."""
    from envlock.model import replayhost, yamlout
    from envlock.snapshot.host import probe_os

    given = context.resources.to_dict() if context.resources else None
    snap = replayhost.snapshot(host=context.host, gpu=context.host_gpu, os_info=probe_os(),
                               engine=engine.version() if hasattr(engine, "version") else None,
                               resources=given)
    tracker.log_text(replay_id, replayhost.ARTIFACT, yamlout.dump(snap))
    tracker.set_tags(replay_id, replayhost.tags(snap))


def with_store(spec: ReplaySpec, store: Path) -> ReplaySpec:
    """The spec with the private MLflow file store the experiment logs to, mounted.
    (A path that does not exist yet: MLflow's file store only then creates experiment 0.)"""
    env = {"MLFLOW_TRACKING_URI": f"file://{STORE_MOUNT}/store",
           "MLFLOW_ALLOW_FILE_STORE": "true", **spec.env}
    return replace(spec, env=env, mounts=(*spec.mounts, Mount(str(store), STORE_MOUNT)))


def with_server_naming(spec: ReplaySpec, run: Any, uri: str, directory: Path) -> ReplaySpec:
    """The spec with MLflow's client-side run naming kept off the global ``random`` when
    the original run logged to a tracking server (envlock.model.backend): a hook mounted
    read-only into the image's site-packages."""
    from envlock.image.render import VENV

    version = run.tags.get(runrecord.PYTHON)
    if not version or not backend.server_named(run.tags, uri):
        return spec
    mounts = []
    site = f"{VENV}/lib/python{{minor}}/site-packages"
    for target, text in backend.server_naming_files(version, site).items():
        source = directory / Path(target).name
        source.write_text(text)
        source.chmod(0o644)
        mounts.append(Mount(str(source), target, read_only=True))
    return replace(spec, mounts=(*spec.mounts, *mounts))


def replay(spec: ReplaySpec, *, engine: EngineLike, tracker: TrackerLike, context: Context,
           output: Callable[[bytes], None] | None = None, report: bool = True
           ) -> ReplayResult:
    """Run ``spec`` on ``engine`` (its image pulled and verified by digest), record a
    replay run (unless ``spec.track`` is off), relay what the experiment logged into it and
    compare it with the original (``spec.checks``), explain a difference and log the HTML
    report (unless ``report`` is off). ``context``: what the spec was decided from
    (:func:`envlock.operations.replayplan.local`); ``output`` hears the container."""
    from envlock.progress import Reporter

    run, tail, changed = context.run, Tail(), list(context.inputs_changed)
    with Reporter("envlock replay"):  # a pull's bytes, rate and time left
        image_id = ensure_image(engine, spec.image, spec.run_id)
    with tempfile.TemporaryDirectory(prefix="envlock-replay-") as tmp:
        store = Path(tmp) / "mlruns"
        store.mkdir(mode=0o777)
        store.chmod(0o777)  # written by the container's non-root user
        replay_id = tracker.create_run(run.experiment_id, f"replay of {run.name or run.run_id}",
                                       {runrecord.REPLAY_OF: run.run_id,
                                        runrecord.IMAGE: spec.image}) if spec.track else None
        relay = comparison = None
        try:
            if replay_id:
                record_host(tracker, replay_id, engine, context)
            prepared = with_server_naming(with_store(spec, store), run, tracker.uri, Path(tmp))
            code = engine.run_experiment(docker_args(prepared, image_id),
                                         on_output=tail.tee(output or to_stdout),
                                         timeout=spec.timeout)
            if replay_id:
                relay = tracker.relay_file_store(store / "store", replay_id,
                                                 f"{STORE_MOUNT}/store")
                comparison = conclude(tracker, run, replay_id, code, spec.checks, relay=relay)
                changed = inputs_changed(tracker, run.run_id, replay_id, context)
        except BaseException as exc:
            fail_replay(tracker, replay_id, exc, tail)
            raise
    resources = context.resources.to_dict() if context.resources else None
    reproduced = code == 0 and bool(comparison and comparison.reproduced)
    explained = _explained(spec, replace(context, inputs_changed=tuple(changed)), engine,
                           tracker, replay_id, reproduced)  # changed inputs rank first
    result = ReplayResult(original_run_id=run.run_id, replay_run_id=replay_id, image=spec.image,
                          exit_code=code, comparison=comparison, warnings=list(context.warnings),
                          relay=relay, resources=resources, inputs_changed=changed,
                          explanations=explained)
    if report and replay_id and comparison is not None:
        result.warnings += log_report(tracker, run.run_id, [replay_id], spec.checks.policy)
    return result


def log_report(tracker: TrackerLike, original_id: str, replay_ids: list[str],
               policy: Any) -> list[str]:
    """``envlock/report.html`` on each replay run; what kept it from being made, if
    anything (a report never fails the replay it describes)."""
    from envlock.operations import report

    if not report.plotting_available():
        return ["no envlock/report.html: matplotlib is not installed (pip install "
                "'envlock[report]')"]
    try:
        for replay_id in replay_ids:
            report.log_report(tracker, original_id, replay_id, policy)
    except (EnvlockError, ValueError, OSError) as exc:
        return [f"the HTML report could not be made: {exc}"]
    return []


def _explained(spec: ReplaySpec, context: Context, engine: EngineLike, tracker: TrackerLike,
               replay_id: str | None, reproduced: bool) -> tuple[Any, ...]:
    """Not reproduced: why it may be, ranked (envlock.operations.explain)."""
    if reproduced or not replay_id:
        return ()
    from envlock.operations.explain import explain_replay, replay_facts

    return explain_replay(tracker, [replay_id], replay_facts(spec, context, engine))


def inputs_changed(tracker: TrackerLike, run_id: str, replay_id: str,
                   context: Context) -> list[str]:
    """The changed referenced inputs, and the MLflow datasets whose digest the replay
    computed differently (by name); tagged ``envlock.inputs_changed`` on the replay run."""
    changed = list(context.inputs_changed)
    datasets = getattr(tracker, "datasets", None)
    if datasets is not None:
        before = {d["name"]: d["digest"] for d in datasets(run_id)}
        after = {d["name"]: d["digest"] for d in datasets(replay_id)}
        changed += [f"MLflow dataset {name}: digest {before[name]} (original) → "
                    f"{after[name]} (replay)" for name in sorted(before.keys() & after.keys())
                    if before[name] != after[name]]
    if changed:
        tracker.set_tags(replay_id, {runrecord.INPUTS_CHANGED: "; ".join(changed)[:5000]})
    return changed


class Tail:
    """The last lines of a container's output, bounded: what a replay that was stopped
    (timed out, interrupted) was waiting on."""

    def __init__(self, lines: int = 5, keep: int = 8192) -> None:
        self.lines, self.keep, self.data = lines, keep, bytearray()

    def tee(self, output: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def write(chunk: bytes) -> None:
            self.data += chunk
            del self.data[:-self.keep]
            output(chunk)

        return write

    def text(self) -> str:
        lines = [line.strip() for line in self.data.decode(errors="replace").splitlines()]
        return " | ".join(line[:300] for line in [x for x in lines if x][-self.lines:])


def fail_replay(tracker: TrackerLike, replay_id: str | None, exc: BaseException, tail: Tail,
                tag_reason: bool = False) -> None:
    """Never leave a replay run RUNNING: FAILED; a timeout (and, with ``tag_reason``, any
    failure around the experiment) tagged with its reason as ``envlock.failure``. A
    timeout or an interrupt is told what the container last said."""
    waiting = tail.text()
    if isinstance(exc, ReplayTimeout) and waiting and not exc.tail:
        exc.tail = waiting
        exc.message += f"; its last output lines: {waiting}"
    if isinstance(exc, Interrupted):
        exc.outcome = (f"replay run {replay_id} was marked FAILED" if replay_id
                       else exc.outcome) + (f"; it was waiting on: {waiting}" if waiting else "")
    if replay_id is None:
        return
    tags = {}
    if isinstance(exc, ReplayTimeout) or tag_reason:
        reason = exc.message if isinstance(exc, EnvlockError) else type(exc).__name__
        tags[FAILURE_TAG] = reason[:5000]
    if isinstance(exc, ReplayTimeout):
        tags[runrecord.VERDICT] = TIMED_OUT
    with contextlib.suppress(Exception):  # the original error matters more
        if tags:
            tracker.set_tags(replay_id, tags)
    tracker.finish(replay_id, False)


def conclude(tracker: TrackerLike, run: Any, replay_id: str, code: int, checks: Checks, *,
             relay: RelayReport | None = None) -> Comparison:
    """Compare the replay's run tree with the original's (and its artifacts when asked),
    record which replay run stands for which original, tag the verdict and finish the
    replay run (local replays and Kubernetes Jobs alike)."""
    import json

    comparison = compare_tree(tracker.run_tree(run.run_id), tracker.run_tree(replay_id),
                              checks.policy, relay.missing if relay else ())
    pairs = [("", run.run_id, replay_id)] + [(r.name, r.original_id, r.replay_id)
                                             for r in comparison.runs
                                             if r.original_id and r.replay_id]
    for _name, original_id, replay_child in pairs[1:]:  # original -> replay, every run
        tracker.set_tags(str(replay_child), {runrecord.REPLAY_OF: str(original_id)})
    if checks.artifacts:
        digests = tracker.artifact_digests_of([str(i) for _n, a, b in pairs for i in (a, b)])
        from envlock.operations.explain import explain_artifacts

        rows = compare_artifacts((name, digests[str(a)], digests[str(b)])
                                 for name, a, b in pairs)
        comparison = replace(comparison, artifacts=explain_artifacts(
            tracker, rows, {name: (str(a), str(b)) for name, a, b in pairs
                            if [n for n, _a, _b in pairs].count(name) == 1}))
    reproduced = code == 0 and comparison.reproduced
    verdict = "reproduced" if reproduced else (
        comparison.verdict if comparison.relay_missing else "not reproduced")
    record = {"relay": relay.to_dict() if relay else None, "exit_code": code,
              "verdict": verdict, "comparison": comparison.to_dict()}
    tracker.log_text(replay_id, "replay.json", json.dumps(record, indent=1, sort_keys=True))
    tags = {runrecord.EXIT_CODE: str(code), runrecord.VERDICT: verdict[:5000],
            runrecord.REPLAY_RUNS: str(1 + sum(1 for r in comparison.runs if r.replay_id))}
    if relay:
        tags[runrecord.RELAY] = relay.summary()
    tracker.set_tags(replay_id, tags)
    tracker.finish(replay_id, code == 0)
    return comparison


def replay_here(request: ReplayRequest, *, engine: EngineLike, tracker: TrackerLike,
                config: Config, notify: Callable[[str, str], None] | None = None,
                output: Callable[[bytes], None] | None = None) -> ReplayResult:
    """``replay``/``verify`` on this host: the spec made from the request, the project's
    config and the run's lock (:func:`envlock.operations.replayplan.local`), then run."""
    from envlock.operations import replayplan

    spec, context = replayplan.local(request, tracker=tracker, config=config, notify=notify)
    return replay(spec, engine=engine, tracker=tracker, context=context, output=output)


def detach(argv: list[str], run_id: str, password: str | None) -> tuple[int, str]:
    """Run ``envlock ARGV`` (this same replay without --detach) as a background process
    with its output in a log file; ``(its pid, the log's path)``. A password read from
    stdin reaches it the same way, through a pipe: never its command line, its
    environment or a file."""
    from envlock.adapters import proc

    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the background process
        prefix=f"envlock-replay-{run_id[:12]}-", suffix=".log", delete=False)
    with log:
        pid = proc.background([sys.executable, "-m", "envlock", *argv], log,
                              None if password is None else f"{password}\n".encode())
    return pid, log.name


def to_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
