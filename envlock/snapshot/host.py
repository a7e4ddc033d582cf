"""The machine an experiment runs on: CPU (model, cores, ISA level), memory, ``/dev/shm``.

Pure parsers over the text of ``/proc/cpuinfo``, ``/proc/meminfo`` and the cgroup
files (v1 and v2), plus one thin :func:`probe_host` that reads them. The result is the
lock's ``host`` section; it never enters ``env_digest`` (the image does not depend on it).

The ISA level is what changes numerics on a CPU: oneDNN/MKL pick their kernels
(AVX2, AVX-512, AMX) by what the CPU offers, and different kernels sum in different
orders. x86-64 levels follow the psABI (v1 baseline, v2 SSE4.2, v3 AVX2/FMA, v4 AVX-512).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: x86-64 psABI micro-architecture levels and the /proc/cpuinfo flags each adds.
X86_LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("x86-64-v2", frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2",
                             "ssse3"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe",
                             "xsave"})),
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)

#: Flags whose presence changes which math kernels run (recorded, compared on replay).
NUMERIC_FLAGS = frozenset({
    # x86
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512dq",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
    "amx_int8", "amx_fp16",
    # aarch64
    "asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "bf16", "i8mm", "sme",
})

#: cgroup values at or above this mean "no limit" (v1 writes 2^63 rounded to pages).
_UNLIMITED = 1 << 62

_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu",
                     "0x48": "HiSilicon", "0x4e": "NVIDIA", "0x50": "Ampere",
                     "0x51": "Qualcomm", "0x61": "Apple", "0xc0": "Ampere"}


def _blocks(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one mapping per processor block."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if blocks[-1]:
                blocks.append({})
            continue
        blocks[-1][key.strip().lower()] = value.strip()
    return [b for b in blocks if b]


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model, vendor, processor count and the full flag set from ``/proc/cpuinfo``."""
    blocks = [b for b in _blocks(text) if "processor" in b] or _blocks(text)
    first = blocks[0] if blocks else {}
    flags = set((first.get("flags") or first.get("features") or "").split())
    vendor = first.get("vendor_id")
    model = first.get("model name")
    if vendor is None and first.get("cpu implementer"):
        code = first["cpu implementer"].lower()
        vendor = _ARM_IMPLEMENTERS.get(code, code)
        model = model or f"{vendor} part {first.get('cpu part', '?')}"
    cores = {(b.get("physical id"), b["core id"]) for b in blocks if "core id" in b}
    return {"model": model, "vendor": vendor, "processors": len(blocks),
            "physical_cores": len(cores) or None, "flags": flags}


def isa_level(arch: str, flags: Iterable[str]) -> str:
    """``x86-64-v1``…``x86-64-v4`` (plus ``+amx`` when AMX tiles exist); on aarch64
    ``aarch64`` with its widest vector extension (``+sve2``, ``+sve``)."""
    have = set(flags)
    if arch in ("x86_64", "amd64", "AMD64"):
        level = "x86-64-v1"
        for name, needed in X86_LEVELS:
            if not needed <= have:
                break
            level = name
        return level + ("+amx" if "amx_tile" in have else "")
    if arch in ("aarch64", "arm64"):
        for ext in ("sve2", "sve"):
            if ext in have:
                return f"aarch64+{ext}"
        return "aarch64"
    return arch or "unknown"


def parse_meminfo(text: str) -> int | None:
    """``MemTotal`` in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "b"
                return int(parts[1]) * (1024 if unit == "kb" else 1)
    return None


def parse_cpu_quota(cpu_max: str | None = None, quota_us: str | None = None,
                    period_us: str | None = None) -> float | None:
    """CPUs allowed by the cgroup: v2 ``cpu.max`` ("max 100000", "200000 100000") or v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (quota -1: none). None: no quota."""
    if cpu_max is not None:
        quota, _, period = cpu_max.strip().partition(" ")
    else:
        quota, period = (quota_us or "").strip(), (period_us or "").strip()
    try:
        q, p = int(quota), int(period or 100000)
    except ValueError:
        return None  # "max", absent
    return q / p if q > 0 and p > 0 else None


def parse_memory_limit(text: str | None) -> int | None:
    """v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` in bytes; None: no limit."""
    value = (text or "").strip()
    if not value.isdigit() or int(value) >= _UNLIMITED:
        return None
    return int(value)


def usable_cores(affinity: int, quota: float | None) -> int:
    """The CPUs this process may really use: its affinity mask, capped by the cgroup quota."""
    return max(1, min(affinity, math.ceil(quota))) if quota else affinity


def host_section(cpuinfo: str, meminfo: str, *, arch: str, affinity: int | None,
                 cpu_quota: float | None, memory_limit: int | None,
                 shm_bytes: int | None) -> dict[str, Any]:
    """The lock's ``host`` section from raw facts (pure)."""
    cpu = parse_cpuinfo(cpuinfo)
    logical = cpu["processors"] or affinity or None
    usable = usable_cores(affinity or logical or 1, cpu_quota) if (affinity or logical) else None
    return {
        "cpu": {"model": cpu["model"], "vendor": cpu["vendor"], "arch": arch,
                "logical_cores": logical, "physical_cores": cpu["physical_cores"],
                "usable_cores": usable,
                "isa_level": isa_level(arch, cpu["flags"]),
                "flags": sorted(cpu["flags"] & NUMERIC_FLAGS)},
        "memory": {"total_bytes": parse_meminfo(meminfo), "limit_bytes": memory_limit},
        "shm": {"size_bytes": shm_bytes},
    }


# ------------------------------------------------------------------ the thin probe

def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def shm_size(path: str = "/dev/shm") -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_blocks * stat.f_frsize


def _cgroup(root: str) -> tuple[float | None, int | None]:
    """(CPU quota, memory limit) from the cgroup v2 files, else v1's."""
    base = Path(root)
    if (base / "cgroup.controllers").exists():
        return parse_cpu_quota(_read(base / "cpu.max")), parse_memory_limit(
            _read(base / "memory.max"))
    quota = parse_cpu_quota(quota_us=_read(base / "cpu" / "cpu.cfs_quota_us"),
                            period_us=_read(base / "cpu" / "cpu.cfs_period_us"))
    return quota, parse_memory_limit(_read(base / "memory" / "memory.limit_in_bytes"))


def probe_host(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> dict[str, Any]:
    """This machine's ``host`` section (reads /proc, the cgroup files and /dev/shm)."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    quota, limit = _cgroup(cgroup_root)
    return host_section(_read(f"{proc}/cpuinfo") or "", _read(f"{proc}/meminfo") or "",
                        arch=os.uname().machine, affinity=affinity, cpu_quota=quota,
                        memory_limit=limit, shm_bytes=shm_size())


def probe_os() -> dict[str, Any]:
    """The replay host's OS, in the shape of a replay-host record."""
    import os

    from envlock.model.replayhost import os_section
    from envlock.snapshot import _probe

    return os_section(_probe.os_facts(), os.uname().machine)
