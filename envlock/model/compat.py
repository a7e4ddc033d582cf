"""Pure: can this host's GPUs and driver run an image's CUDA build? (replay pre-flight)

NVIDIA's minimum driver per CUDA toolkit and PyTorch's per-CUDA arch lists are kept
as data (``envlock/data/cuda_compat.yaml``, derived from recorded sources).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent.parent / "data" / "cuda_compat.yaml"


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(DATA.read_text()))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def major_minor(cuda: str) -> str:
    return ".".join(cuda.split(".")[:2])


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def driver_check(cuda: str, driver: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) for running CUDA ``cuda`` user-space on driver ``driver``."""
    data = table()
    wanted = data["min_driver"].get(major_minor(cuda))
    floor = data["minor_version_floor"].get(cuda.split(".")[0])
    have = version_tuple(driver)
    if wanted and have >= version_tuple(wanted):
        return [], []
    if floor and have >= version_tuple(floor):
        return [], [f"driver {driver} is older than {wanted} (CUDA {major_minor(cuda)}) but "
                    f"within CUDA {cuda.split('.')[0]}.x minor version compatibility "
                    f"(≥ {floor}); kernels needing PTX JIT may fail"]
    need = floor or wanted
    if need is None:
        return [], [f"no driver requirement known for CUDA {cuda}"]
    return [f"host driver {driver} is too old for the image's CUDA {cuda} (needs ≥ {need})"], []


def arch_supported(cuda: str, capability: str) -> bool | None:
    """Does the official PyTorch build for ``cuda`` have kernels for ``capability``?
    None when the arch list of that build is not known."""
    arch_list = table()["torch_arch_list"].get(major_minor(cuda))
    if not arch_list:
        return None
    cap = version_tuple(capability)
    for entry in arch_list.split(";"):
        ptx = entry.endswith("+PTX")
        arch = version_tuple(entry.replace("+PTX", ""))
        if arch[0] == cap[0] and arch[1:] <= cap[1:]:
            return True  # SASS runs on later minors of the same major
        if ptx and arch <= cap:
            return True  # PTX is JIT-compiled for newer GPUs
    return False


def preflight(locked: dict[str, Any], host_gpu: dict[str, Any], use_gpus: bool) -> Verdict:
    """Check the image (its lock's frameworks/gpu sections) against the host's GPUs."""
    if not use_gpus:
        return Verdict(ok=True)
    problems: list[str] = []
    warnings: list[str] = []
    if not host_gpu.get("driver_version"):
        return Verdict(ok=False, problems=("GPUs were requested but this host has no NVIDIA "
                                           "driver",))
    torch = (locked.get("frameworks") or {}).get("torch") or {}
    cuda = torch.get("cuda")
    if cuda:
        found, warned = driver_check(cuda, host_gpu["driver_version"])
        problems += found
        warnings += warned
    original = {d.get("name") for d in (locked.get("gpu") or {}).get("devices", [])}
    for device in host_gpu.get("devices", []):
        if device.get("name") in original or not cuda or not device.get("compute_capability"):
            continue
        supported = arch_supported(cuda, device["compute_capability"])
        if supported is False:
            problems.append(f"{device['name']} (sm {device['compute_capability']}) is not in "
                            f"the arch list of torch's CUDA {cuda} build")
        elif supported is None:
            warnings.append(f"arch list of torch's CUDA {cuda} build unknown; cannot check "
                            f"{device['name']}")
    return Verdict(ok=not problems, problems=tuple(problems), warnings=tuple(warnings))


def cpu_warnings(locked_host: Mapping[str, Any] | None, host: Mapping[str, Any] | None
                 ) -> tuple[str, ...]:
    """Warnings (never refusals) when this host's CPU would run other math kernels than the
    original's: another architecture or ISA level, or numerics-relevant flags missing
    (oneDNN/MKL/OpenBLAS pick AVX2, AVX-512 or AMX kernels at run time)."""
    old, new = (locked_host or {}).get("cpu") or {}, (host or {}).get("cpu") or {}
    if not old or not new:
        return ()
    if old.get("arch") != new.get("arch"):
        return (f"CPU architecture differs ({old.get('arch')} originally, {new.get('arch')} "
                "here): numerics may change",)
    out = []
    if old.get("isa_level") != new.get("isa_level"):
        out.append(f"CPU ISA level differs ({old.get('isa_level')} originally, "
                   f"{new.get('isa_level')} here): math kernels and so numerics may change")
    missing = sorted(set(old.get("flags") or ()) - set(new.get("flags") or ()))
    added = sorted(set(new.get("flags") or ()) - set(old.get("flags") or ()))
    if missing:
        out.append(f"this CPU lacks {', '.join(missing)} that the original had: numerics "
                   "may change")
    elif added and not out:
        out.append(f"this CPU has {', '.join(added)} that the original lacked: libraries may "
                   "pick other kernels, numerics may change")
    return tuple(out)
