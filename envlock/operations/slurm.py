"""``envlock replay RUN --on slurm`` and ``envlock verify RUN… --on slurm``: replays as
Slurm batch jobs, a sweep as one job array.

The job script is rendered purely (:mod:`envlock.model.slurmjob`) and submitted and
followed with Slurm's own commands (:mod:`envlock.adapters.slurm`). As in a local replay,
the experiment's MLflow writes to a private file store — here in the task's folder on the
filesystem the nodes share (``slurm.job_dir``) — which envlock relays into the replay run
when the task ends, then compares the trees (:func:`envlock.operations.replay.conclude`):
the verdict is the same object as a local replay's. The replay run carries the job id,
node, partition and how the job ended (``envlock.slurm.*`` tags). Ctrl-C or SIGTERM
cancels the job (``scancel``) and waits until nothing of it is queued.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters import slurm as cluster
from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError, ReplayTimeout, UsageError
from envlock.model import runrecord
from envlock.model.replayspec import ReplaySpec
from envlock.model.slurmjob import (
    STORE_MOUNT,
    JobState,
    Outcome,
    SlurmJob,
    SlurmSettings,
    Task,
    batch_script,
    min_driver,
    outcome,
)
from envlock.operations.replay import (
    ReplayError,
    ReplayResult,
    Tail,
    conclude,
    fail_replay,
    inputs_changed,
)
from envlock.operations.replayplan import Context, ReplayRequest

if TYPE_CHECKING:
    from envlock.config import Config

__all__ = ["SlurmReplayResult", "SweepItem", "plan_script", "replay_on_slurm",
           "settings_from", "sweep"]

TAG = runrecord.SLURM_PREFIX  # job_id, task, node, partition, exit_reason
POLL = 0.5  # seconds between looks at the queue (scontrol answers in milliseconds)
CANCEL_WAIT = 30.0


@dataclass
class SlurmReplayResult(ReplayResult):
    job: str = ""
    node: str = ""
    partition: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "on": "slurm", "job": self.job, "node": self.node,
                "partition": self.partition, "exit_reason": self.reason}


@dataclass
class Pending:
    """A replay submitted as one task of a job, waiting for its end."""

    index: int
    spec: ReplaySpec
    context: Context
    replay_id: str | None
    task_dir: Path
    attempts: int = 1


def settings_from(config: Config, given: dict[str, Any]) -> SlurmSettings:
    """The ``slurm`` table of ``[tool.envlock]`` with the flags given over it, checked."""
    from envlock.model.slurmjob import parse_settings

    return parse_settings({**(config.get("slurm") or {}), **given}, "--on slurm")


def job_root(settings: SlurmSettings) -> Path:
    """``slurm.job_dir``, on the filesystem the nodes share (default ~/.cache/envlock/slurm)."""
    return Path(settings.job_dir or Path.home() / ".cache" / "envlock" / "slurm").expanduser()


def job_folder(settings: SlurmSettings) -> Path:
    """A new folder for one job under ``slurm.job_dir`` (on the nodes' shared filesystem)."""
    import tempfile

    root = job_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="job-", dir=root)).resolve()


def render(pairs: Sequence[tuple[ReplaySpec, Context]], settings: SlurmSettings, folder: Path,
           concurrency: int | None = None) -> SlurmJob:
    tasks = tuple(Task(spec, str(folder / str(i)), min_driver(context.locked))
                  for i, (spec, context) in enumerate(pairs))
    return SlurmJob(tasks=tasks, settings=settings, job_dir=str(folder), concurrency=concurrency)


def plan_script(spec: ReplaySpec, context: Context, settings: SlurmSettings) -> str:
    """The batch script ``replay --on slurm --dry-run`` prints (its folder a placeholder)."""
    return batch_script(render([(spec, context)], settings, job_root(settings) / "job-DRYRUN"))


def _start(pending: Sequence[Pending], tracker: TrackerLike) -> None:
    for item in pending:
        run = item.context.run
        if item.spec.track:
            item.replay_id = tracker.create_run(
                run.experiment_id, f"replay of {run.name or run.run_id}",
                {runrecord.REPLAY_OF: run.run_id, runrecord.IMAGE: item.spec.image,
                 runrecord.REPLAYED_ON: "slurm"})


def _submit(job: SlurmJob, folder: Path, array: Sequence[int] | None = None) -> str:
    script = folder / "job.sbatch"
    if not script.exists():
        script.write_text(batch_script(job))
    return cluster.submit(str(script), array)


def replay_on_slurm(spec: ReplaySpec, context: Context, *, tracker: TrackerLike,
                    settings: SlurmSettings, output: Callable[[bytes], None] | None = None
                    ) -> SlurmReplayResult:
    """Submit ``spec`` as a batch job, stream its output, relay and compare when it ends."""
    folder = job_folder(settings)
    job = render([(spec, context)], settings, folder)
    item = Pending(0, spec, context, None, folder / "0")
    _start([item], tracker)
    tail, job_id = Tail(), None
    try:
        job_id = _submit(job, folder)
        _tag(tracker, item, {"job_id": job_id})
        state = follow(job_id, [0], settings, {0: item.task_dir / "output.log"},
                       output=tail.tee(output or _stdout))[0]
        return _conclude(item, job_id, state, tracker, tail)
    except BaseException as exc:
        if job_id is not None:
            cancel(job_id)
        fail_replay(tracker, item.replay_id, exc, tail, tag_reason=True)
        raise


def _conclude(item: Pending, job_id: str, state: JobState, tracker: TrackerLike,
              tail: Tail) -> SlurmReplayResult:
    """The ended task: relayed and compared, or the error that says why it cannot be."""
    found = outcome(state, _read(item.task_dir / "status"))
    node = _read(item.task_dir / "node") or state.node
    facts = {"job_id": job_id, "node": node, "partition": state.partition,
             "exit_reason": f"{found.kind}: {found.detail}" if found.detail else found.kind}
    _tag(tracker, item, facts)
    if found.kind != "exit":
        raise _failure(found, item, job_id, node, tail)
    code = found.exit_code if found.exit_code is not None else 1
    relay = comparison = None
    if item.replay_id:
        relay = tracker.relay_file_store(item.task_dir / "mlruns" / "store", item.replay_id,
                                         f"{STORE_MOUNT}/store")
        comparison = conclude(tracker, item.context.run, item.replay_id, code,
                              item.spec.checks, relay=relay)
    changed = inputs_changed(tracker, item.spec.run_id, item.replay_id, item.context) \
        if item.replay_id else list(item.context.inputs_changed)
    reproduced = code == 0 and bool(comparison and comparison.reproduced)
    return SlurmReplayResult(original_run_id=item.spec.run_id, replay_run_id=item.replay_id,
                             image=item.spec.image, exit_code=code, comparison=comparison,
                             warnings=list(item.context.warnings), relay=relay,
                             inputs_changed=changed,
                             explanations=_explained(item, tracker, reproduced),
                             job=job_id, node=node, partition=state.partition,
                             reason=facts["exit_reason"])


class _NoEngine:
    """The login node has no container engine to ask for the image's labels."""

    def image(self, reference: str) -> None:
        return None


def _explained(item: Pending, tracker: TrackerLike, reproduced: bool) -> tuple[Any, ...]:
    """Not reproduced: why it may be, ranked and recorded on the replay run, as a local
    replay's (the image's labels aside: no engine here)."""
    if reproduced or not item.replay_id:
        return ()
    from envlock.operations.explain import explain_replay, replay_facts

    facts = replay_facts(item.spec, item.context, _NoEngine())  # type: ignore[arg-type]
    return explain_replay(tracker, [item.replay_id], facts)


def _failure(found: Outcome, item: Pending, job_id: str, node: str, tail: Tail
             ) -> EnvlockError:
    where = f"Slurm job {job_id} on {node or 'no node'}"
    if found.kind == "timeout":
        return ReplayTimeout(item.spec.timeout or 0, tail.text(), where=f"its container in {where}")
    if found.kind == "pull failed":
        return cluster.SlurmError(
            f"the image {item.spec.image} could not be pulled on node {node}: {found.detail}",
            "the nodes must reach the registry: capture with a --registry they reach, or "
            "mark a plain-HTTP one in [tool.envlock] slurm.insecure_registries")
    if found.kind == "preflight failed":
        return ReplayError(f"{where}: the GPU pre-flight failed: {found.detail}",
                           "pick a partition whose nodes have the GPUs and a new enough driver "
                           "(--partition)")
    return cluster.SlurmError(f"{where} ended without a verdict: {found.kind}, {found.detail}",
                              "a cluster failure, not the experiment's: run it again")


def follow(job_id: str, indices: Sequence[int], settings: SlurmSettings,
           logs: dict[int, Path], *, output: Callable[[bytes], None] | None = None,
           on_done: Callable[[int, JobState], None] | None = None) -> dict[int, JobState]:
    """Poll ``job_id`` until each of its tasks ``indices`` has ended; stream the log of
    ``logs`` to ``output``; call ``on_done`` as each ends. A task pending for longer than
    ``settings.pending_limit`` cancels the job, with the reason Slurm gives."""
    ended: dict[int, JobState] = {}
    offsets = dict.fromkeys(logs, 0)
    began, started = time.monotonic(), False
    while True:
        now = cluster.states(job_id)
        started = started or any(s.phase != "pending" for s in now.values())
        for index in [i for i in indices if i not in ended]:
            state = now.get(index) or JobState("UNKNOWN", "Slurm no longer knows the job")
            if output:
                offsets = _stream(logs, offsets, output)
            if state.phase in ("ended", "cluster failure"):
                ended[index] = state
                if on_done:
                    on_done(index, state)
            elif state.phase == "pending" and not started and settings.pending_limit and \
                    time.monotonic() - began > settings.pending_limit:
                cancel(job_id)
                raise cluster.SlurmError(
                    f"Slurm job {job_id} was still pending after "
                    f"{settings.pending_limit:g} s ({state.reason or 'no reason given'}); it "
                    "was cancelled", "pick a less busy partition, ask for less, or raise "
                    "[tool.envlock] slurm.pending_limit")
        if len(ended) == len(indices):
            if output:
                _stream(logs, offsets, output)
            return ended
        time.sleep(POLL)


def _stream(logs: dict[int, Path], offsets: dict[int, int], output: Callable[[bytes], None]
            ) -> dict[int, int]:
    for index, path in logs.items():
        try:
            with path.open("rb") as handle:
                handle.seek(offsets[index])
                chunk = handle.read()
        except OSError:
            continue
        if chunk:
            output(chunk)
            offsets[index] += len(chunk)
    return offsets


def cancel(job_id: str) -> None:
    """``scancel`` and wait (bounded) until nothing of the job is queued."""
    cluster.cancel(job_id)
    deadline = time.monotonic() + CANCEL_WAIT
    while cluster.queued(job_id) and time.monotonic() < deadline:
        time.sleep(0.2)


def _tag(tracker: TrackerLike, item: Pending, facts: dict[str, str]) -> None:
    if item.replay_id:
        tracker.set_tags(item.replay_id, {TAG + k: v[:5000] for k, v in facts.items() if v})


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


# ------------------------------------------------------------------ a sweep

@dataclass
class SweepItem:
    """One run of a sweep: its replay and verdict, a cluster failure, or the error that
    stopped it before or around its job."""

    run_id: str
    result: SlurmReplayResult | None = None
    error: str | None = None
    cluster_failure: str | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        return bool(self.result and self.result.exit_code == 0 and self.result.comparison
                    and self.result.comparison.reproduced)

    @property
    def verdict(self) -> str:
        if self.cluster_failure:
            return "cluster failure"
        if self.error:
            return "error"
        return "reproduced" if self.reproduced else "not reproduced"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "verdict": self.verdict, "reproduced": self.reproduced,
                "error": self.error, "cluster_failure": self.cluster_failure,
                "attempts": self.attempts, "replay": self.result.to_dict() if self.result else None}


def sweep(run_ids: Sequence[str], *, request: ReplayRequest, tracker: TrackerLike,
          config: Config, settings: SlurmSettings, concurrency: int,
          on_result: Callable[[SweepItem], None] | None = None) -> list[SweepItem]:
    """Replay ``run_ids`` as one job array, ``concurrency`` tasks at a time; each item is
    passed to ``on_result`` as its task ends. A task that fails for the cluster's reason
    (preempted, node failure, time limit) is submitted once more; failing again, it is a
    cluster failure, never "not reproduced"."""
    from envlock.operations import replayplan

    if concurrency < 1:
        raise UsageError("--parallel must be at least 1")
    items = {run_id: SweepItem(run_id) for run_id in run_ids}
    pending: list[Pending] = []
    for run_id in dict.fromkeys(run_ids):
        try:
            spec, context = replayplan.slurm(replace(request, run_id=run_id), tracker=tracker,
                                             config=config, shared=job_root(settings))
        except EnvlockError as exc:
            items[run_id].error = exc.message
            _tell(on_result, items[run_id])
            continue
        pending.append(Pending(len(pending), spec, context, None, Path()))
    if pending:
        _run_array(pending, items, tracker, settings, concurrency, on_result)
    return [items[run_id] for run_id in dict.fromkeys(run_ids)]


def _run_array(pending: list[Pending], items: dict[str, SweepItem], tracker: TrackerLike,
               settings: SlurmSettings, concurrency: int,
               on_result: Callable[[SweepItem], None] | None) -> None:
    folder = job_folder(settings)
    job = render([(p.spec, p.context) for p in pending], settings, folder, concurrency)
    for p in pending:
        p.task_dir = folder / str(p.index)
    _start(pending, tracker)
    left, array, job_id = list(pending), None, None
    try:
        while left:
            job_id = _submit(job, folder, array)
            retry: list[Pending] = []

            def done(index: int, state: JobState, job_id: str = job_id,
                     retry: list[Pending] = retry) -> None:
                item = pending[index]
                if _task_done(item, job_id, state, items[item.spec.run_id], tracker):
                    _tell(on_result, items[item.spec.run_id])
                else:
                    retry.append(item)

            follow(job_id, [p.index for p in left], settings, {}, on_done=done)
            for item in retry:
                item.attempts += 1
            left, array = retry, [p.index for p in retry]
    except BaseException as exc:
        if job_id is not None:
            cancel(job_id)
        for p in left:
            fail_replay(tracker, p.replay_id, exc, Tail(), tag_reason=True)
        raise


def _task_done(item: Pending, job_id: str, state: JobState, into: SweepItem,
               tracker: TrackerLike) -> bool:
    """Record the ended task on ``into``; False when it is to be submitted again."""
    found = outcome(state, _read(item.task_dir / "status"))
    into.attempts = item.attempts
    if found.retryable and item.attempts < 2:
        return False
    try:
        into.result = _conclude(item, job_id, state, tracker, Tail())
    except (ReplayTimeout, EnvlockError) as exc:
        fail_replay(tracker, item.replay_id, exc, Tail(), tag_reason=True)
        if found.retryable:
            into.cluster_failure = f"{found.kind}: {found.detail} (job {job_id}, tried twice)"
        else:
            into.error = exc.message
    return True


def _tell(on_result: Callable[[SweepItem], None] | None, item: SweepItem) -> None:
    if on_result:
        on_result(item)
