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

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.errors import EnvlockError, Interrupted, UsageError
from envlock.model.compare import Comparison, MetricPolicy, compare_artifacts, compare_tree
from envlock.model.runtree import RelayReport

STORE_MOUNT = "/envlock/mlruns"


class ReplayError(EnvlockError):
    """The run cannot be replayed (no image, image gone, incompatible host)."""


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

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return {"original_run_id": self.original_run_id, "replay_run_id": self.replay_run_id,
                "resources": self.resources,
                "image": self.image, "exit_code": self.exit_code, "ok": self.ok,
                "warnings": self.warnings,
                "relay": self.relay.to_dict() if self.relay else None,
                "comparison": self.comparison.to_dict() if self.comparison else None}


def parse_gpus(value: str | None) -> dict[str, Any] | None:
    """``all`` | ``none`` | ``N`` | ``device=0,1`` -> a device request (None: no GPUs)."""
    if value is None or value == "none":
        return None
    if value == "all":
        return {"count": -1, "ids": None}
    if value.isdigit():
        return {"count": int(value), "ids": None}
    if value.startswith("device="):
        return {"count": None, "ids": value.split("=", 1)[1].split(",")}
    raise UsageError(f"--gpus {value!r} is not understood", "use all, none, N or device=0,1")


def parse_pairs(values: list[str], flag: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, found, right = value.partition(sep)
        if not found or not left or not right:
            raise UsageError(f"{flag} {value!r} must look like A{sep}B")
        out.append((left, right))
    return out


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


def _ignore(kind: str, text: str) -> None:
    del kind, text


def _probe_host() -> dict[str, Any] | None:
    from envlock.snapshot.host import probe_host

    try:
        return probe_host()
    except (OSError, AttributeError):
        return None


def record_host(tracker: TrackerLike, replay_id: str, engine: EngineLike,
                host: dict[str, Any] | None, host_gpu: dict[str, Any] | None, given: Any) -> None:
    """Log the replay host (``envlock/replay-host.yaml`` and ``envlock.replay_host.*``
    tags) on the replay run, before the container runs."""
    from envlock.model import replayhost, yamlout
    from envlock.snapshot.host import probe_os

    snap = replayhost.snapshot(host=host, gpu=host_gpu, os_info=probe_os(),
                               engine=engine.version() if hasattr(engine, "version") else None,
                               resources=given.to_dict())
    tracker.log_text(replay_id, replayhost.ARTIFACT, yamlout.dump(snap))
    tracker.set_tags(replay_id, replayhost.tags(snap))


def replay(run_id: str, *, engine: EngineLike, tracker: TrackerLike, gpus: str | None = None,
           mounts: list[str] | None = None, env: list[str] | None = None,
           command: str | None = None, track: bool = True, force: bool = False,
           policy: MetricPolicy | None = None,
           # the raw --shm-size/--cpus/--memory; this host's facts (None: probed);
           # notify(kind, text) hears pre-flight warnings and resource decisions early
           shm_size: str | None = None, cpus: str | None = None, memory: str | None = None,
           host: dict[str, Any] | None = None,
           notify: Callable[[str, str], None] | None = None,
           network: str = "none",
           host_gpu: dict[str, Any] | None = None, compare_files: bool = False,
           output: Callable[[bytes], None] | None = None) -> ReplayResult:
    from envlock.model import compat
    from envlock.model import resources as sizing
    from envlock.operations.targets import captured

    limits = sizing.parse_flags(shm_size, cpus, memory)
    lock, run = captured(tracker, run_id, image=True)
    image = run.tags["envlock.image"]
    binds = {src: {"bind": dst, "mode": "rw"} for src, dst in parse_pairs(mounts or [],
                                                                            "--mount", ":")}
    extra_env = dict(parse_pairs(env or [], "--env", "="))
    with tempfile.TemporaryDirectory(prefix="envlock-replay-") as tmp:
        if host_gpu is None:
            from envlock.snapshot.gpu import probe_gpu

            host_gpu = probe_gpu()
        gpu_default = "all" if lock.gpu.get("devices") and host_gpu.get("devices") else "none"
        request = parse_gpus(gpus or gpu_default)
        verdict = compat.preflight({"frameworks": lock.frameworks, "gpu": lock.gpu}, host_gpu,
                                   request is not None)
        if not verdict.ok and not force:
            raise ReplayError(f"this host cannot run the image: {'; '.join(verdict.problems)}",
                              "use a matching host, or --force to try anyway")
        host = host if host is not None else _probe_host()
        given = sizing.decide(lock.host, host, shm_size=limits[0], cpus=limits[1],
                                 memory=limits[2], recorded_env=lock.runtime.get("env"),
                                 given_env=extra_env)
        verdict = replace(verdict, warnings=(*verdict.warnings,
                                             *compat.cpu_warnings(lock.host, host)))
        for kind, texts in (("warning", verdict.warnings), ("note", given.notes)):
            for text in texts:
                (notify or _ignore)(kind, text)
        image_id = ensure_image(engine, image, run_id)
        store = Path(tmp) / "mlruns"
        store.mkdir(mode=0o777)
        store.chmod(0o777)  # written by the container's non-root user
        replay_id = tracker.create_run(run.experiment_id, f"replay of {run.name or run_id}", {
            "envlock.replay_of": run_id, "envlock.image": image}) if track else None
        # A path that does not exist yet: MLflow's file store only then creates experiment 0.
        container_env = {"MLFLOW_TRACKING_URI": f"file://{STORE_MOUNT}/store",
                         "MLFLOW_ALLOW_FILE_STORE": "true", "HOME": "/workspace",
                         "GIT_PYTHON_REFRESH": "quiet", **given.env, **extra_env}
        binds[str(store)] = {"bind": STORE_MOUNT, "mode": "rw"}
        argv = ["/bin/sh", "-c", command] if command else None
        relay = comparison = None
        try:
            if replay_id:
                record_host(tracker, replay_id, engine, host, host_gpu, given)
            code = engine.run_experiment(image_id, argv, env=container_env, binds=binds,
                                         shm_size=given.shm_size, nano_cpus=given.nano_cpus,
                                         mem_limit=given.mem_limit,
                                         gpus=request, network=network,
                                         on_output=output or to_stdout)
            if replay_id:
                relay = tracker.relay_file_store(store / "store", replay_id,
                                                 f"{STORE_MOUNT}/store")
                comparison = conclude(tracker, run, replay_id, code, policy, relay=relay,
                                      compare_files=compare_files)
        except BaseException as exc:
            if replay_id:  # never leave a replay run RUNNING
                tracker.finish(replay_id, False)
                if isinstance(exc, Interrupted):
                    exc.outcome = f"replay run {replay_id} was marked FAILED"
            raise
    return ReplayResult(original_run_id=run_id, replay_run_id=replay_id, image=image,
                        exit_code=code, comparison=comparison, warnings=list(verdict.warnings),
                        relay=relay, resources=given.to_dict())


def conclude(tracker: TrackerLike, run: Any, replay_id: str, code: int,
             policy: MetricPolicy | None = None, *,
             relay: RelayReport | None = None, compare_files: bool = False) -> Comparison:
    """Compare the replay's run tree with the original's (and its artifacts when asked),
    record which replay run stands for which original, tag the verdict and finish the
    replay run (local replays and Kubernetes Jobs alike)."""
    import json
    from dataclasses import replace

    comparison = compare_tree(tracker.run_tree(run.run_id), tracker.run_tree(replay_id),
                              policy or MetricPolicy(), relay.missing if relay else ())
    pairs = [("", run.run_id, replay_id)] + [(r.name, r.original_id, r.replay_id)
                                             for r in comparison.runs
                                             if r.original_id and r.replay_id]
    for _name, original_id, replay_child in pairs[1:]:  # original -> replay, every run
        tracker.set_tags(str(replay_child), {"envlock.replay_of": str(original_id)})
    if compare_files:
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
    tags = {"envlock.exit_code": str(code), "envlock.verdict": verdict[:5000],
            "envlock.replay_runs": str(1 + sum(1 for r in comparison.runs if r.replay_id))}
    if relay:
        tags["envlock.relay"] = relay.summary()
    tracker.set_tags(replay_id, tags)
    tracker.finish(replay_id, code == 0)
    return comparison


def to_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
