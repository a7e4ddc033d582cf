"""GPU host facts: NVIDIA driver, CUDA driver API, each GPU; a system CUDA toolkit.

Reading is split from interpreting. ``read_nvml()`` talks to the NVML library
(nvidia-ml-py) and returns raw values; ``gpu_section()`` turns raw values into the
lock's ``gpu`` section and is pure, so it is tested on recorded real outputs.
No GPU, no driver or no NVML library is a normal case, recorded as ``none``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from envlock.adapters import proc

NONE: dict[str, Any] = {"driver_version": None, "cuda_driver_version": None, "devices": []}
_NVCC_RELEASE = re.compile(r"release (\d+\.\d+), V([\d.]+)")
_VERSION_TXT = re.compile(r"CUDA Version (\d+\.\d+(?:\.\d+)?)")


def cuda_version_from_int(value: int | None) -> str | None:
    """NVML/cudaDriverGetVersion encode 12.2 as 12020."""
    if not value:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml() -> dict[str, Any]:
    """Raw facts from NVML, or ``{"error": ...}`` when there is no usable NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        return {"error": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"error": f"NVML unavailable: {exc}"}
    try:
        raw: dict[str, Any] = {
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": pynvml.nvmlSystemGetCudaDriverVersion_v2(),
            "devices": [],
        }
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            raw["devices"].append({
                "index": index,
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "compute_capability": list(pynvml.nvmlDeviceGetCudaComputeCapability(handle)),
                "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            })
        return raw
    except pynvml.NVMLError as exc:
        return {"error": f"NVML query failed: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def _device(raw: dict[str, Any]) -> dict[str, Any]:
    cap = raw.get("compute_capability")
    memory = raw.get("memory_total_bytes")
    return {"index": int(raw["index"]), "name": raw["name"],
            "compute_capability": f"{cap[0]}.{cap[1]}" if cap else None,
            "memory_mib": int(memory) // (1024 * 1024) if memory is not None else None}


def gpu_section(raw: dict[str, Any]) -> dict[str, Any]:
    """The lock's ``gpu`` section from raw NVML (or nvidia-smi) facts."""
    if raw.get("error") or not raw.get("driver_version"):
        return {**NONE, "status": "timed out" if raw.get("timed_out") else "none",
                "reason": raw.get("error", "no NVIDIA driver")}
    cuda = raw.get("cuda_driver_version")
    return {
        "status": "present" if raw.get("devices") else "no devices",
        "driver_version": raw["driver_version"],
        "cuda_driver_version": cuda if isinstance(cuda, str) else cuda_version_from_int(cuda),
        "devices": [_device(d) for d in raw.get("devices", [])],
    }


def _number(cell: str) -> float | None:
    match = re.match(r"\s*([\d.]+)", cell)
    return float(match.group(1)) if match else None


def parse_nvidia_smi_csv(text: str) -> dict[str, Any]:
    """Raw facts from ``nvidia-smi --query-gpu=index,name,driver_version,compute_cap,
    memory.total --format=csv`` (the fallback when NVML cannot load). Columns are read by
    their header, in any order; units such as ``MiB`` are stripped."""
    import csv  # only on hosts where NVML failed and nvidia-smi answered

    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text)) if row]
    if not rows or "driver_version" not in [h.split(" [")[0] for h in rows[0]]:
        return {"error": "nvidia-smi output has no driver_version column"}
    header = [h.split(" [")[0] for h in rows[0]]
    devices = []
    driver = None
    for position, row in enumerate(rows[1:]):
        cells = dict(zip(header, row, strict=False))
        driver = cells.get("driver_version") or driver
        cap = cells.get("compute_cap", "")
        major, _, minor = cap.partition(".")
        memory = _number(cells.get("memory.total", ""))
        devices.append({
            "index": int(cells["index"]) if cells.get("index", "").isdigit() else position,
            "name": cells.get("name", "unknown"),
            "compute_capability": [int(major), int(minor or 0)] if major.isdigit() else None,
            "memory_total_bytes": int(memory * 1024 * 1024) if memory is not None else None,
        })
    if driver is None:
        return {"error": "nvidia-smi listed no GPU"}
    return {"driver_version": driver, "cuda_driver_version": None, "devices": devices}


_SMI_HEADER = re.compile(r"Driver Version:\s*([\d.]+)\s+CUDA Version:\s*([\d.]+)")


def parse_nvidia_smi_banner(text: str) -> dict[str, str] | None:
    """Driver and CUDA driver API versions from plain ``nvidia-smi`` output."""
    match = _SMI_HEADER.search(text)
    return {"driver_version": match.group(1), "cuda_driver_version": match.group(2)} if match \
        else None


def probe_timeout() -> float:
    """Seconds a probe command (nvidia-smi, nvcc) may take: ENVLOCK_PROBE_TIMEOUT, else 20."""
    try:
        return float(os.environ.get("ENVLOCK_PROBE_TIMEOUT") or 20)
    except ValueError:
        return 20.0


def read_nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {"error": "no nvidia-smi"}
    query = "index,name,driver_version,compute_cap,memory.total"
    try:
        out = proc.run([exe, f"--query-gpu={query}", "--format=csv"], timeout=probe_timeout())
        banner = proc.run([exe], timeout=probe_timeout())
    except TimeoutError as exc:
        return {"error": f"nvidia-smi timed out ({getattr(exc, 'message', exc)})",
                "timed_out": True}
    except OSError as exc:
        return {"error": f"nvidia-smi failed: {exc}"}
    if out.returncode != 0:
        return {"error": f"nvidia-smi exited {out.returncode}"}
    raw = parse_nvidia_smi_csv(out.stdout.decode(errors="replace"))
    versions = parse_nvidia_smi_banner(banner.stdout.decode(errors="replace"))
    if versions and not raw.get("error"):
        raw["cuda_driver_version"] = versions["cuda_driver_version"]
    return raw


def nvidia_driver_present() -> bool:
    """Cheap check before loading NVML: the kernel driver, its device nodes, or WSL's GPU."""
    return (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
            or os.path.exists("/dev/dxg"))


def probe_gpu() -> dict[str, Any]:
    if not nvidia_driver_present():
        return gpu_section({"error": "no NVIDIA driver (/proc/driver/nvidia, /dev/nvidiactl)"})
    raw = read_nvml()
    if raw.get("error") and shutil.which("nvidia-smi"):
        fallback = read_nvidia_smi()
        if not fallback.get("error") or fallback.get("timed_out"):
            raw = fallback
    return gpu_section(raw)


# ------------------------------------------------------------ system CUDA toolkit

def parse_nvcc_version(text: str) -> str | None:
    match = _NVCC_RELEASE.search(text)
    return match.group(2) if match else None


def toolkit_version_from_files(root: Path) -> str | None:
    """CUDA >= 11.1 ships version.json; older toolkits a version.txt."""
    try:
        data = json.loads((root / "version.json").read_text())
        return str(data["cuda"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        match = _VERSION_TXT.search((root / "version.txt").read_text())
        return match.group(1) if match else None
    except OSError:
        return None


def _toolkit_roots() -> list[Path]:
    roots = [os.environ.get(k) for k in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")]
    roots.append("/usr/local/cuda")
    return [Path(r) for r in roots if r]


def _nvcc_toolkit(nvcc: str) -> dict[str, Any] | None:
    try:
        out = proc.run([nvcc, "--version"], timeout=probe_timeout())
    except TimeoutError:  # recorded, so a wedged host shows in the lock instead of failing it
        return {"version": None, "path": str(Path(nvcc).parent.parent), "from": "nvcc",
                "status": "timed out"}
    except OSError:
        return None
    version = parse_nvcc_version(out.stdout.decode(errors="replace"))
    if not version:
        return None
    return {"version": version, "path": str(Path(nvcc).parent.parent), "from": "nvcc"}


def probe_cuda_toolkit() -> dict[str, Any] | None:
    """A system CUDA toolkit (not the pip wheels): version files first, then nvcc."""
    for root in _toolkit_roots():
        version = toolkit_version_from_files(root)
        if version:
            return {"version": version, "path": str(root), "from": "version file"}
        if (root / "bin" / "nvcc").is_file():
            return _nvcc_toolkit(str(root / "bin" / "nvcc"))
    nvcc = shutil.which("nvcc")
    return _nvcc_toolkit(nvcc) if nvcc else None
