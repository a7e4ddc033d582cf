"""The one place a replay's :class:`~envlock.model.replayspec.ReplaySpec` is made.

Each container setting comes from, highest first: its flag, the project's ``[tool.envlock]``
(``envlock.config``), then the run's lock or the built-in default (``/dev/shm`` as large as
on the original host, GPUs when the run had them and this host has them, the captured
command, ``--network none``). The result is checked once and decided once — for this
host's engine (:func:`local`), for a Kubernetes Job (:func:`kubernetes`) or a Slurm job
(:func:`slurm`) — and each runtime only renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError, UsageError
from envlock.image.render import WORKDIR
from envlock.model import compat, runrecord
from envlock.model import resources as sizing
from envlock.model.inputs import Input
from envlock.model.replayspec import (
    Checks,
    ContainerFlags,
    GpuRequest,
    Mount,
    ReplaySpec,
    parse_gpus,
    parse_mounts,
    parse_network,
    parse_pairs,
    parse_timeout,
)
from envlock.operations.targets import captured

if TYPE_CHECKING:
    from envlock.adapters.tracking import RunData
    from envlock.config import Config

#: Every replay container's base environment (the image's user has HOME there).
BASE_ENV = {"HOME": WORKDIR, "GIT_PYTHON_REFRESH": "quiet"}


class ReplayError(EnvlockError):
    """The run cannot be replayed (no image, image gone, incompatible host)."""


@dataclass(frozen=True)
class ReplayRequest:
    """What ``replay`` or ``verify`` was asked for, as given (before config and lock)."""

    run_id: str
    container: ContainerFlags = field(default_factory=ContainerFlags)
    tolerance: str | None = None  # --tolerance; else the config's
    metrics: tuple[str, ...] = ()
    compare_artifacts: bool = False
    strict: bool = False  # --strict: every metric gates, timing ones too
    track: bool = True
    force: bool = False  # run even when the GPU/driver pre-flight fails
    allow_changed_inputs: bool = False  # run although referenced inputs differ


@dataclass(frozen=True)
class Context:
    """What a spec was decided from: the original run, its lock's GPU facts (the
    pre-flight's), this host's facts (recorded on the replay run) and the warnings."""

    run: RunData
    locked: Mapping[str, Any]
    original_command: str | None = None
    host: dict[str, Any] | None = None
    host_gpu: dict[str, Any] | None = None
    resources: sizing.Resources | None = None
    warnings: tuple[str, ...] = ()
    force: bool = False
    #: Referenced inputs this host has not as the run read them (--allow-changed-inputs).
    inputs_changed: tuple[str, ...] = ()
    #: A Job's or a Slurm job's copied inputs, and the run's inputs artifact they are
    #: pulled from (a Job's inputs image is derived from them at submit).
    copied: tuple[Input, ...] = ()
    inputs_artifact: str | None = None
    #: Variables envlock set for the run's pinned inputs (a hub cache's HF_HUB_CACHE):
    #: not something the replay was given, so no explanation names them.
    inputs_env: Mapping[str, str] = field(default_factory=dict)


def with_config(flags: ContainerFlags, config: Config) -> ContainerFlags:
    """Each container setting: the flag, else ``[tool.envlock]``, else not given."""
    values: dict[str, Any] = {}
    for item in fields(ContainerFlags):
        given = getattr(flags, item.name)
        value = config.get(item.name, list(given) if isinstance(given, tuple) else given)
        values[item.name] = tuple(value) if isinstance(value, list) else value
    return ContainerFlags(**values)


def checked(request: ReplayRequest, config: Config) -> ContainerFlags:
    """The request's container settings with the config's, checked (nothing is read)."""
    flags = with_config(request.container, config)
    _checked(flags)
    return flags


def checks(request: ReplayRequest, config: Config) -> Checks:
    return Checks(policy=config.metric_policy(request.tolerance, request.metrics,
                                              request.strict),
                  artifacts=request.compare_artifacts)


def _checked(flags: ContainerFlags) -> dict[str, Any]:
    """The values every runtime parses the same way, checked before anything runs."""
    shm, cpus, memory = sizing.parse_flags(flags.shm_size, flags.cpus, flags.memory)
    return {"limits": {"shm_size": shm, "cpus": cpus, "memory": memory},
            "timeout": parse_timeout(flags.timeout), "mounts": parse_mounts(flags.mounts),
            "network": parse_network(flags.network or "none")}


def local(request: ReplayRequest, *, tracker: TrackerLike, config: Config,
          host: dict[str, Any] | None = None, host_gpu: dict[str, Any] | None = None,
          notify: Callable[[str, str], None] | None = None) -> tuple[ReplaySpec, Context]:
    """The spec of a replay on this host's engine, and what it was decided from.
    ``host``/``host_gpu``: this host's facts (None: probed). ``notify(kind, text)`` hears
    the pre-flight's warnings and the resource decisions as soon as they are made."""
    flags = with_config(request.container, config)
    parsed = _checked(flags)
    extra_env = dict(parse_pairs(flags.env, "--env", "="))
    lock, run = captured(tracker, request.run_id, image=True)
    host_gpu = host_gpu if host_gpu is not None else _probe_gpu()
    had = "all" if lock.gpu.get("devices") and host_gpu.get("devices") else "none"
    gpus = parse_gpus(flags.gpus or had)
    locked = {"frameworks": lock.frameworks, "gpu": lock.gpu,
              "host": lock.host, "runtime": lock.runtime}  # host, runtime: explanations
    verdict = compat.preflight(locked, host_gpu, gpus is not None)
    if not verdict.ok and not request.force:
        raise ReplayError(f"this host cannot run the image: {'; '.join(verdict.problems)}",
                          "use a matching host, or --force to try anyway")
    host = host if host is not None else _probe_host()
    given = sizing.decide(lock.host, host, **parsed["limits"],
                          recorded_env=lock.runtime.get("env"), given_env=extra_env)
    warnings = (*verdict.warnings, *compat.cpu_warnings(lock.host, host))
    for kind, texts in (("warning", warnings), ("note", given.notes)):
        for text in texts:
            (notify or _ignore)(kind, text)
    restored = _inputs(lock, run, request, notify)
    inputs_env = _inputs_env(lock.inputs)
    spec = ReplaySpec(
        run_id=request.run_id, image=run.tags[runrecord.IMAGE], command=flags.command,
        env={**BASE_ENV, **given.env, **inputs_env, **extra_env}, mounts=parsed["mounts"],
        inputs=tuple(Mount(src, dst, read_only=True) for src, dst in restored.mounts),
        shm_size=given.shm_size, cpus=given.cpus, memory=given.mem_limit, gpus=gpus,
        network=parsed["network"], timeout=parsed["timeout"], checks=checks(request, config),
        track=request.track)
    return spec, Context(run=run, locked=locked, original_command=lock.runtime.get("command"),
                         host=host, host_gpu=host_gpu, resources=given, warnings=warnings,
                         force=request.force, inputs_env=inputs_env,
                         inputs_changed=tuple(c.describe() for c in restored.changed))


def kubernetes(request: ReplayRequest, *, tracker: TrackerLike, config: Config
               ) -> tuple[ReplaySpec, Context]:
    """The spec of a replay as a Kubernetes Job. The node is not known before scheduling:
    the replay side of the resources is only what --cpus says, the GPUs a number (default:
    as many as the run had). A pod always has the cluster's network (``network`` is for
    engines) and bind mounts of this host mean nothing there."""
    from envlock.model.kubejob import input_mounts, parse_env, parse_gpu_count

    flags = with_config(request.container, config)
    parsed = _checked(flags)
    if parsed["mounts"]:
        raise UsageError("mounts work only with --on local (the config's mounts too)",
                         "drop them, or replay with --on local")
    env = parse_env(flags.env)
    lock, run = captured(tracker, request.run_id, image=True)
    copied, changed = _kube_inputs(request, lock.inputs)
    image = run.tags[runrecord.IMAGE]
    if "@sha256:" not in image:
        raise ReplayError(f"image {image} of run {request.run_id} is not pinned in a registry",
                          "a cluster pulls images: capture with a --registry it can reach")
    original = lock.runtime.get("command")
    if not flags.command and not original:
        raise UsageError(f"run {request.run_id} recorded no command", "pass --command")
    given = sizing.decide(lock.host, None, **parsed["limits"],
                          recorded_env=lock.runtime.get("env"), given_env=env)
    count = parse_gpu_count(flags.gpus, len(lock.gpu.get("devices") or []))
    inputs_env = _inputs_env(copied)
    spec = ReplaySpec(
        run_id=request.run_id, image=image, command=flags.command,
        env={**BASE_ENV, **given.env, **inputs_env, **env},
        inputs=input_mounts(copied, WORKDIR),
        shm_size=given.shm_size, cpus=given.cpus,
        memory=given.mem_limit, gpus=GpuRequest(count=count) if count else None,
        timeout=parsed["timeout"], checks=checks(request, config))
    locked = {"frameworks": lock.frameworks, "gpu": lock.gpu,
              "host": lock.host, "runtime": lock.runtime}  # host, runtime: explanations
    return spec, Context(run=run, locked=locked, original_command=original, resources=given,
                         force=request.force, inputs_changed=changed, copied=copied,
                         inputs_artifact=run.tags.get(runrecord.INPUTS),
                         inputs_env=inputs_env)


def _kube_inputs(request: ReplayRequest, pinned: tuple[Input, ...]
                 ) -> tuple[tuple[Input, ...], tuple[str, ...]]:
    """A Job's inputs: the copied ones (carried in its inputs image), and the referenced
    ones that could not be checked or differ. A referenced file is on some host's disk,
    and a cluster node is not this host: envlock can neither verify it nor give it to the
    pod, so it stops the replay (unless --allow-changed-inputs: the pod then runs without
    it, and the verdict names it). A referenced S3 object is checked from here, as for a
    local replay: the pod reads that same object."""
    from envlock.operations import inputs

    copied = tuple(i for i in pinned if i.carry == "copy")
    files = [i for i in pinned if i.carry != "copy" and i.kind != "remote"]
    if files and not request.allow_changed_inputs:
        raise inputs.InputsError(
            f"run {request.run_id} references {len(files)} input(s) by hash only "
            f"({', '.join(i.path for i in files[:3])}): a cluster node is not this host, so "
            "envlock can neither verify them nor give them to the Job",
            "capture the run again with a copy cap that copies them (inputs_copy_max in "
            "[tool.envlock]), replay it with --on local, or run the Job without them with "
            "--allow-changed-inputs")
    remote = [i for i in pinned if i.kind == "remote"]
    changed = [c.describe() for c in inputs.check(remote, Path.cwd())]
    if changed and not request.allow_changed_inputs:
        raise inputs.InputsError("the run's referenced inputs are not as it read them: "
                                 + "; ".join(changed), "restore them, or replay anyway with "
                                 "--allow-changed-inputs (the verdict then names them)")
    changed += [f"{i.path}: not given to the Job (referenced: a cluster node is not this "
                "host)" for i in files]
    return copied, tuple(changed)


def _inputs(lock: Any, run: Any, request: ReplayRequest,
            notify: Callable[[str, str], None] | None, shared: Path | None = None,
            fetch: bool = True) -> Any:
    """The run's inputs for this host: referenced ones checked, copied ones pulled
    (``shared``: for nodes that share that folder's filesystem with this host)."""
    from envlock.operations import inputs

    if not lock.inputs:
        return inputs.Restored()
    root = Path(lock.project_root) if lock.project_root and Path(
        lock.project_root).is_dir() else Path.cwd()
    allow, artifact = request.allow_changed_inputs, run.tags.get(inputs.TAG)
    restored = inputs.restore(lock.inputs, artifact, project=root, workdir=WORKDIR,
                              allow_changed=allow) if shared is None else \
        inputs.restore_shared(lock.inputs, artifact, project=root, workdir=WORKDIR,
                              shared=shared, allow_changed=allow, fetch=fetch)
    for change in restored.changed:
        (notify or _ignore)("warning", f"input {change.describe()} (--allow-changed-inputs)")
    return restored


def _inputs_env(given: Iterable[Input]) -> dict[str, str]:
    """The environment the pinned hub models among the inputs ``given`` to the replay
    need where it mounts them (:func:`envlock.model.hub.replay_env`)."""
    from envlock.model import hub
    from envlock.model.inputs import container_path

    return hub.replay_env(container_path(i.path, WORKDIR) for i in given
                          if i.kind == "hub-model")


def slurm(request: ReplayRequest, *, tracker: TrackerLike, config: Config,
          shared: Path | None = None, fetch: bool = True) -> tuple[ReplaySpec, Context]:
    """The spec of a replay as a Slurm job (:mod:`envlock.operations.slurm`). Like a Job,
    the node is not known before scheduling (resources: only what the flags say; GPUs a
    number, default as many as the run had) and the image is pulled by digest from its
    registry; unlike a pod, the container keeps ``--network`` and ``--mount`` (paths of
    the filesystem the nodes share). The command is always explicit (Charliecloud reads no
    image CMD): the flag's, else the captured one. The run's inputs are restored as for a
    local replay, into a cache on the filesystem ``shared`` (``slurm.job_dir``) is on
    (:func:`envlock.operations.inputs.restore_shared`; ``fetch`` false: a dry run, nothing
    pulled), and bound read-only where the run saw them."""
    from envlock.model.kubejob import parse_env, parse_gpu_count

    flags = with_config(request.container, config)
    parsed = _checked(flags)
    env = parse_env(flags.env)  # the script is plain text on a shared filesystem
    lock, run = captured(tracker, request.run_id, image=True)
    restored = _inputs(lock, run, request, None, shared=shared or Path.cwd(), fetch=fetch)
    image = run.tags[runrecord.IMAGE]
    if "@sha256:" not in image:
        raise ReplayError(f"image {image} of run {request.run_id} is not pinned in a registry",
                          "the nodes pull images: capture with a --registry they can reach")
    command = flags.command or lock.runtime.get("command")
    if not command:
        raise UsageError(f"run {request.run_id} recorded no command", "pass --command")
    given = sizing.decide(lock.host, None, **parsed["limits"],
                          recorded_env=lock.runtime.get("env"), given_env=env)
    count = parse_gpu_count(flags.gpus, len(lock.gpu.get("devices") or []))
    inputs_env = _inputs_env(lock.inputs)
    spec = ReplaySpec(
        run_id=request.run_id, image=image, command=command,
        env={**BASE_ENV, **given.env, **inputs_env, **env}, mounts=parsed["mounts"],
        inputs=tuple(Mount(src, dst, read_only=True) for src, dst in restored.mounts),
        shm_size=given.shm_size, cpus=given.cpus, memory=given.mem_limit,
        gpus=GpuRequest(count=count) if count else None, network=parsed["network"],
        timeout=parsed["timeout"], checks=checks(request, config), track=request.track)
    return spec, Context(run=run, locked={"frameworks": lock.frameworks, "gpu": lock.gpu},
                         original_command=lock.runtime.get("command"), resources=given,
                         force=request.force, inputs_env=inputs_env,
                         inputs_changed=tuple(c.describe() for c in restored.changed))


def _ignore(kind: str, text: str) -> None:
    del kind, text


def _probe_gpu() -> dict[str, Any]:
    from envlock.snapshot.gpu import probe_gpu

    return probe_gpu()


def _probe_host() -> dict[str, Any] | None:
    from envlock.snapshot.host import probe_host

    try:
        return probe_host()
    except (OSError, AttributeError):
        return None
