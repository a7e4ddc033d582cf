"""The replay host, recorded: what a "not reproduced" may be explained by.

A replay run carries ``envlock/replay-host.yaml`` (GPU, driver, CPU, memory, /dev/shm,
OS, the engine's version and the resources given to the container) and
``envlock.replay_host.*`` tags. ``envlock diff ORIGINAL REPLAY`` compares it with the
original's lock (``host``, ``gpu``, ``os``) beside the replay's verdict.

Everything here is pure (the replay host's OS is read by :func:`envlock.snapshot.host.probe_os`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envlock.model import runrecord
from envlock.model.diff import Change
from envlock.model.lockfile import Lock

ARTIFACT = runrecord.REPLAY_HOST_ARTIFACT
SCHEMA = "envlock.replay-host/1"
TAG = runrecord.REPLAY_HOST_PREFIX

#: What is compared with the original's lock, per section (dotted paths).
FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("cpu.model", "cpu.arch", "cpu.isa_level", "cpu.flags", "cpu.usable_cores",
             "memory.total_bytes", "memory.limit_bytes", "shm.size_bytes"),
    "gpu": ("driver_version", "cuda_driver_version", "devices"),
    "os": ("system", "distro", "distro_version", "kernel", "arch"),
}


def os_section(raw_os: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The replay host's OS from ``_probe.os_facts()`` (no Python facts: no libc here)."""
    release = raw_os.get("os_release") or {}
    return {"system": raw_os.get("system") or "unknown", "distro": release.get("ID"),
            "distro_version": release.get("VERSION_ID"),
            "pretty_name": release.get("PRETTY_NAME"), "kernel": raw_os.get("kernel"),
            "arch": arch}


def snapshot(*, host: Mapping[str, Any] | None, gpu: Mapping[str, Any] | None,
             os_info: Mapping[str, Any] | None, engine: Mapping[str, Any] | None,
             resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The document logged as ``envlock/replay-host.yaml``."""
    return {"schema": SCHEMA, "host": dict(host) if host else None,
            "gpu": dict(gpu) if gpu else None,
            "os": dict(os_info) if os_info else None, "engine": dict(engine) if engine else None,
            "resources": dict(resources) if resources else None}


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def gpu_summary(gpu: Mapping[str, Any] | None) -> str:
    devices = (gpu or {}).get("devices") or []
    if not devices:
        return "none"
    names: dict[str, int] = {}
    for device in devices:
        names[str(device.get("name"))] = names.get(str(device.get("name")), 0) + 1
    return ", ".join(f"{n}x {name}" for name, n in names.items())


def tags(snap: Mapping[str, Any]) -> dict[str, str]:
    """``envlock.replay_host.*``: the snapshot's headline facts, searchable in MLflow."""
    os_info = snap.get("os") or {}
    engine = snap.get("engine") or {}
    shm = _get(snap, "resources.shm_size")
    values = {
        "cpu": _get(snap, "host.cpu.model"), "isa_level": _get(snap, "host.cpu.isa_level"),
        "cores": _get(snap, "host.cpu.usable_cores"), "gpu": gpu_summary(snap.get("gpu")),
        "driver": _get(snap, "gpu.driver_version"),
        "os": os_info.get("pretty_name") or " ".join(
            str(v) for v in (os_info.get("distro"), os_info.get("distro_version")) if v),
        "engine": " ".join(str(v) for v in (engine.get("engine"), engine.get("version")) if v),
        "shm_size": shm,
    }
    return {TAG + key: str(value) if value not in (None, "") else "-"
            for key, value in values.items()}


@dataclass(frozen=True)
class HostDiff:
    """The original's host (from its lock) against a replay's recorded host."""

    original_run_id: str
    replay_run_id: str
    replay_of: str | None
    verdict: str | None
    changes: tuple[Change, ...]
    engine: Mapping[str, Any] | None = None
    resources: Mapping[str, Any] | None = None

    @property
    def identical(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "replay-host", "original_run_id": self.original_run_id,
                "replay_run_id": self.replay_run_id, "replay_of": self.replay_of,
                "verdict": self.verdict, "identical": self.identical,
                "changes": [c.to_dict() for c in self.changes],
                "engine": dict(self.engine) if self.engine else None,
                "resources": dict(self.resources) if self.resources else None}


def host_changes(lock: Lock, snap: Mapping[str, Any]) -> tuple[Change, ...]:
    """Differences in the compared fields; a side that is unknown (a schema-1 lock without
    ``host``, a snapshot without GPU facts) is left out rather than called different."""
    original = {"host": lock.host, "gpu": lock.gpu, "os": lock.os}
    out = []
    for category, paths in FIELDS.items():
        old, new = original[category], snap.get(category)
        if not old or not new:
            continue
        out += [Change(category, path, _get(old, path), _get(new, path)) for path in paths
                if _devices(_get(old, path)) != _devices(_get(new, path))]
    return tuple(out)


def _devices(value: Any) -> Any:
    """GPU devices compared by what matters (name, compute capability, memory)."""
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return [(d.get("name"), d.get("compute_capability"), d.get("memory_mib"))
                for d in value]
    return value


def host_diff(lock: Lock, snap: Mapping[str, Any], *, original_run_id: str,
              replay_run_id: str, replay_tags: Mapping[str, str]) -> HostDiff:
    return HostDiff(original_run_id=original_run_id, replay_run_id=replay_run_id,
                    replay_of=replay_tags.get(runrecord.REPLAY_OF),
                    verdict=replay_tags.get(runrecord.VERDICT),
                    changes=host_changes(lock, snap), engine=snap.get("engine"),
                    resources=snap.get("resources"))
