"""Pure: the resources a replay container gets, decided from the lock's ``host`` section,
the replay host's facts and the user's flags.

* ``/dev/shm``: at least as large as the original host's (PyTorch DataLoader workers pass
  batches through it; Docker's 64 MB default kills them), else the replay host's own
  size when the lock does not know; ``--shm-size`` overrides.
* ``--cpus`` / ``--memory``: Docker's ``nano_cpus`` / ``mem_limit`` (and Kubernetes'
  requests = limits).
* Thread counts: when the replay has a different number of usable CPUs, the BLAS/OpenMP
  thread counts are pinned to the original's usable core count (the number of threads
  changes the order of reductions, so the numbers), unless the lock's runtime env or
  ``--env`` already sets them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envlock.errors import UsageError
from envlock.model import sizes

#: Thread-count variables read by OpenMP (torch's intra-op pool), MKL, OpenBLAS, BLIS,
#: Apple's vecLib (numpy) and numexpr.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

def parse_size(text: str, flag: str) -> int:
    """``64m``, ``2g``, ``1.5GiB``, ``268435456`` (bytes) -> bytes, as Docker reads them."""
    return sizes.parse(text, flag)


def parse_cpus(text: str) -> float:
    """``--cpus 4`` or ``1.5``: a positive number of CPUs (Docker's --cpus)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = 0.0
    if not value > 0 or math.isinf(value):
        raise UsageError(f"--cpus {text!r} is not a number of CPUs",
                         "write a positive number, e.g. --cpus 4 or --cpus 1.5")
    return value


format_size = sizes.human


@dataclass(frozen=True)
class Resources:
    """What the container gets, and why (``notes`` are printed by the replay)."""

    shm_size: int | None = None  # bytes; None: the engine's default
    nano_cpus: int | None = None
    mem_limit: int | None = None
    cpus: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # thread counts to add
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"shm_size": self.shm_size, "cpus": self.cpus, "nano_cpus": self.nano_cpus,
                "mem_limit": self.mem_limit, "env": dict(self.env), "notes": list(self.notes)}


def _get(section: Mapping[str, Any] | None, *path: str) -> Any:
    data: Any = section
    for key in path:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data


def decide_shm(locked_host: Mapping[str, Any] | None, replay_host: Mapping[str, Any] | None,
               override: int | None) -> tuple[int | None, str]:
    if override is not None:
        return override, f"/dev/shm {format_size(override)} (--shm-size)"
    original = _get(locked_host, "shm", "size_bytes")
    if original:
        return int(original), f"/dev/shm {format_size(original)}, as on the original host"
    here = _get(replay_host, "shm", "size_bytes")
    if here:
        return int(here), (f"/dev/shm {format_size(here)}, as on this host (the lock does not "
                           "record the original's)")
    return None, "/dev/shm: the engine's default (neither host's size is known)"


def thread_env(original_cores: int | None, replay_cpus: float | None,
               already_set: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """Thread counts pinned to the original's cores when the replay's CPU count differs."""
    if not original_cores or not replay_cpus or math.ceil(replay_cpus) == original_cores:
        return {}, None
    env = {name: str(original_cores) for name in THREAD_VARS if name not in already_set}
    kept = [name for name in THREAD_VARS if name in already_set]
    note = (f"{_cpus(replay_cpus)} CPU(s) here, {original_cores} on the original host: "
            + (f"{', '.join(env)}={original_cores}" if env else "thread counts")
            + (f" ({', '.join(kept)} kept as recorded/given)" if kept else ""))
    return env, note


def _cpus(value: float) -> str:
    return f"{value:g}"


def decide(locked_host: Mapping[str, Any] | None, replay_host: Mapping[str, Any] | None, *,
           shm_size: int | None = None, cpus: float | None = None, memory: int | None = None,
           recorded_env: Mapping[str, str] | None = None,
           given_env: Mapping[str, str] | None = None) -> Resources:
    """The container's resources (see the module docstring)."""
    shm, shm_note = decide_shm(locked_host, replay_host, shm_size)
    notes = [shm_note]
    replay_cpus = cpus or _get(replay_host, "cpu", "usable_cores")
    already = {**(recorded_env or {}), **(given_env or {})}
    env, note = thread_env(_get(locked_host, "cpu", "usable_cores"), replay_cpus, already)
    if note:
        notes.append(note)
    if cpus:
        notes.append(f"CPUs limited to {_cpus(cpus)} (--cpus)")
    if memory:
        notes.append(f"memory limited to {format_size(memory)} (--memory)")
        if shm and shm > memory:
            notes.append(f"/dev/shm ({format_size(shm)}) is larger than --memory; what is "
                         "written there counts against the memory limit")
    return Resources(shm_size=shm, nano_cpus=int(cpus * 1e9) if cpus else None,
                     mem_limit=memory, cpus=cpus, env=env, notes=tuple(notes))


def parse_flags(shm_size: str | None, cpus: str | None, memory: str | None
                ) -> tuple[int | None, float | None, int | None]:
    """The raw ``--shm-size`` / ``--cpus`` / ``--memory`` values, checked."""
    return (parse_size(shm_size, "--shm-size") if shm_size is not None else None,
            parse_cpus(cpus) if cpus is not None else None,
            parse_size(memory, "--memory") if memory is not None else None)
