"""Pure: one frozen description of a replay, and its rendering for Docker and Podman.

A :class:`ReplaySpec` says everything about the container a replay runs: the image by
digest, the command, working directory and user, the environment, bind mounts, resources
(``/dev/shm``, CPUs, memory), GPUs, the network, the hardening, the hostname and the
timeout, plus what the replay compares afterwards. It is made once from the flags, the
project's ``[tool.envlock]`` and the run's lock (:mod:`envlock.operations.replayplan`), and
every runtime renders it: :func:`docker_args` gives docker-py's ``containers.create``
keyword arguments (Podman's compatible API takes the same), and
:func:`envlock.model.kubejob.job_manifest` gives the Kubernetes Job. Nothing here talks to
an engine.

The container's hostname resolves under every network mode: it is set explicitly and
mapped to 127.0.0.1 in ``/etc/hosts`` (Docker's ``extra_hosts``, a pod's ``hostAliases``),
so a multi-process rendezvous (``torchrun --standalone``, c10d, gloo) finds itself with
``--network none``. Under ``--network host`` (or ``container:…``) the hostname is the
other namespace's, which the engine does not let a container change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envlock.errors import UsageError
from envlock.image.render import USER_ID, WORKDIR
from envlock.model.compare import MetricPolicy

#: The replay container's hostname: fixed, so that nothing in a replay depends on a
#: random container id (a DNS label, valid for Docker and as a pod's hostname).
HOSTNAME = "envlock-replay"
LOOPBACK = "127.0.0.1"
#: Networks that share another namespace's hostname (the engine refuses to set one).
_SHARED_NETWORKS = ("host", "container:")
_TIMEOUT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*", re.IGNORECASE)
_TIMEOUT_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into the container (``--mount SRC:DST``)."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class GpuRequest:
    """``count`` devices (-1: all) or exactly the devices ``ids``."""

    count: int | None = None
    ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Hardening:
    """How the container is locked down (the same rules for every runtime)."""

    no_new_privileges: bool = True
    drop_capabilities: tuple[str, ...] = ("ALL",)
    read_only_root: bool = True
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,nosuid,nodev,size=2g"),)
    seccomp: str = "RuntimeDefault"


@dataclass(frozen=True)
class Checks:
    """What the replay's run tree is compared with the original's by."""

    #: the tolerances, --metric, and which metrics gate the verdict (timing metrics not,
    #: unless --strict or the config's gated_metrics)
    policy: MetricPolicy = field(default_factory=MetricPolicy)
    artifacts: bool = False  # also every artifact by sha256


@dataclass(frozen=True)
class ReplaySpec:
    """Everything one replay is: what runs, how it is confined, what it is compared by."""

    run_id: str  # the original (captured) run
    image: str  # by digest: repo@sha256:… or an image id
    command: str | None = None  # instead of the image's CMD (the captured command)
    workdir: str = WORKDIR
    user: int = USER_ID
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    #: The run's pinned inputs, read-only where the run saw them (the lock's ``inputs``:
    #: copies from the cache, referenced files from this host, both verified by hash; for
    #: a Kubernetes Job, entries of its inputs image, :func:`kubejob.input_mounts`).
    inputs: tuple[Mount, ...] = ()
    shm_size: int | None = None  # bytes; None: the runtime's default
    cpus: float | None = None
    memory: int | None = None  # bytes
    gpus: GpuRequest | None = None
    network: str = "none"
    hostname: str = HOSTNAME
    timeout: float | None = None  # seconds; None: no limit
    hardening: Hardening = field(default_factory=Hardening)
    checks: Checks = field(default_factory=Checks)
    track: bool = True  # record a replay run

    @property
    def argv(self) -> list[str] | None:
        return ["/bin/sh", "-c", self.command] if self.command else None

    @property
    def sets_hostname(self) -> bool:
        """Whether the container gets its own hostname (not under host/container networks)."""
        return not self.network.startswith(_SHARED_NETWORKS)


@dataclass(frozen=True)
class ContainerFlags:
    """The container options as the user wrote them (a flag, else ``[tool.envlock]``),
    before they are checked and decided against the lock; None or () is "not given".
    Each field sets the :class:`ReplaySpec` field of the same name; ``replay``'s and
    ``verify``'s options (:mod:`envlock.cli.replayopts`) and the config's keys
    (:data:`envlock.config.KEYS`) are declared against these fields."""

    network: str | None = None
    env: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    command: str | None = None
    shm_size: str | None = None
    cpus: str | None = None
    memory: str | None = None
    gpus: str | None = None
    timeout: str | None = None


# ------------------------------------------------------------------ parsing the options

def parse_gpus(value: str | None) -> GpuRequest | None:
    """``all`` | ``none`` | ``N`` | ``device=0,1`` -> a device request (None: no GPUs)."""
    if value is None or value == "none":
        return None
    if value == "all":
        return GpuRequest(count=-1)
    if value.isdigit():
        return GpuRequest(count=int(value))
    if value.startswith("device="):
        return GpuRequest(ids=tuple(value.split("=", 1)[1].split(",")))
    raise UsageError(f"--gpus {value!r} is not understood", "use all, none, N or device=0,1")


def parse_pairs(values: Iterable[str], flag: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, found, right = value.partition(sep)
        if not found or not left or not right:
            raise UsageError(f"{flag} {value!r} must look like A{sep}B")
        out.append((left, right))
    return out


def parse_mounts(values: Iterable[str]) -> tuple[Mount, ...]:
    """``--mount SRC:DST`` (``SRC:DST:ro`` read-only)."""
    mounts = []
    for source, rest in parse_pairs(values, "--mount", ":"):
        target, _, mode = rest.partition(":")
        if mode not in ("", "ro", "rw"):
            raise UsageError(f"--mount {source}:{rest}: mode {mode!r} is not ro or rw")
        mounts.append(Mount(source, target, read_only=mode == "ro"))
    return tuple(mounts)


def parse_timeout(value: str | float | None) -> float | None:
    """``--timeout``: seconds (``90``, ``1.5``) or with a unit (``90s``, ``30m``, ``2h``,
    ``1d``); None, ``0`` and ``none`` mean no limit."""
    if value is None or str(value).strip().lower() in ("none", "0"):
        return None
    match = _TIMEOUT.fullmatch(str(value))
    seconds = float(match.group(1)) * _TIMEOUT_UNITS[(match.group(2) or "").lower()] \
        if match else 0.0
    if seconds <= 0:
        raise UsageError(f"--timeout {value!r} is not a duration",
                         "write seconds or a number with s, m, h or d, e.g. 900, 30m or 2h")
    return seconds


def parse_network(value: str) -> str:
    if not value or value != value.strip() or value == "container:":
        raise UsageError(f"--network {value!r} is not a network",
                         "use none (the default), bridge, host or a network's name")
    return value


def format_timeout(seconds: float) -> str:
    return f"{seconds:g} s"


# ------------------------------------------------------------------ Docker / Podman

def docker_args(spec: ReplaySpec, image: str | None = None) -> dict[str, Any]:
    """``docker.containers.create(**docker_args(spec))``: the container ``spec`` describes
    (``image``: the engine's id of the verified image, default the spec's reference).
    Plain values only: docker-py turns the device-request and mount dicts into its types."""
    hard = spec.hardening
    args: dict[str, Any] = {
        "image": image or spec.image, "command": spec.argv, "environment": dict(spec.env),
        "user": f"{spec.user}:{spec.user}", "working_dir": spec.workdir,
        "security_opt": ["no-new-privileges"] if hard.no_new_privileges else [],
        "cap_drop": list(hard.drop_capabilities), "read_only": hard.read_only_root,
        "tmpfs": dict(hard.tmpfs),
        "volumes": {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                    for m in spec.mounts},
        # the workspace: a volume the engine fills from the image's /workspace
        "mounts": [{"Target": spec.workdir, "Source": None, "Type": "volume",
                    "ReadOnly": False}, *_input_mounts(spec.inputs)],
        "network_mode": spec.network, "device_requests": _device_requests(spec.gpus),
        "detach": True,
    }
    if spec.sets_hostname:
        args.update(hostname=spec.hostname, extra_hosts={spec.hostname: LOOPBACK})
    limits = {"shm_size": spec.shm_size, "mem_limit": spec.memory,
              "nano_cpus": int(spec.cpus * 1e9) if spec.cpus else None}
    args.update({key: value for key, value in limits.items() if value is not None})
    return args


def _input_mounts(inputs: tuple[Mount, ...]) -> list[dict[str, Any]]:
    """Bind mounts of the inputs (a list, not ``volumes``: two inputs may share a source
    blob); the engine mounts them after the workspace they may lie in."""
    return [{"Target": m.target, "Source": m.source, "Type": "bind", "ReadOnly": True}
            for m in sorted(inputs, key=lambda m: m.target)]


def _device_requests(gpus: GpuRequest | None) -> list[dict[str, Any]] | None:
    if gpus is None:
        return None
    return [{"count": gpus.count, "device_ids": list(gpus.ids) if gpus.ids else None,
             "capabilities": [["gpu"]]}]
