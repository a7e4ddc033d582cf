"""Pure: CUDA-bearing frameworks (PyTorch, TensorFlow, JAX, CuPy) from files, never imports.

Importing torch takes seconds; its generated ``torch/version.py`` and the
``nvidia-*-cu*`` wheels next to it say the same things in microseconds.
Each framework is a small detector: ``detect(packages)`` says whether it is
installed, ``collect(...)`` reads what it was built against.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

from envlock.model.lockfile import Package

_ASSIGN = re.compile(r"^(\w+)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.M)
_LIB_VERSION = re.compile(r"^lib(cudnn|nccl|cudart|cublas)\w*\.so\.([\d.]+)$")

#: User-space CUDA libraries shipped as wheels, by the lock key they fill in.
CUDA_WHEELS = {
    "cudnn": ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11"),
    "nccl": ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11"),
    "cuda_runtime": ("nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12",
                     "nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime"),
    "cublas": ("nvidia-cublas-cu13", "nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas"),
}


def parse_assignments(text: str | None) -> dict[str, Any]:
    """Top-level ``name = literal`` lines of a generated version/build-info file."""
    values: dict[str, Any] = {}
    for name, expr in _ASSIGN.findall(text or ""):
        try:
            values[name] = ast.literal_eval(expr)
        except (ValueError, SyntaxError):
            continue
    return values


def _wheel_version(packages: Mapping[str, Package], key: str) -> dict[str, str] | None:
    for name in CUDA_WHEELS[key]:
        if name in packages:
            return {"version": packages[name].version, "from": name}
    return None


def cuda_libraries(packages: Mapping[str, Package]) -> dict[str, Any]:
    """Versions of the CUDA user-space libraries installed as pip wheels."""
    found = {key: _wheel_version(packages, key) for key in CUDA_WHEELS}
    return {key: value for key, value in found.items() if value}


def bundled_libraries(libs: list[str]) -> dict[str, str]:
    """Versions visible in the names of libraries bundled inside ``torch/lib``."""
    out: dict[str, str] = {}
    for lib in libs:
        match = _LIB_VERSION.match(lib)
        if match and len(match.group(2)) > len(out.get(match.group(1), "")):
            out[match.group(1)] = match.group(2)
    return out


def _local_tag(version: str) -> str | None:
    return version.split("+", 1)[1] if "+" in version else None


def torch_info(raw: Mapping[str, Any] | None, packages: Mapping[str, Package]) -> dict[str, Any]:
    pkg = packages["torch"]
    values = parse_assignments((raw or {}).get("text"))
    wheels = cuda_libraries(packages)
    bundled = bundled_libraries((raw or {}).get("libs") or [])
    cuda = values.get("cuda")
    hip = values.get("hip")
    return {
        "version": values.get("__version__", pkg.version),
        "local_tag": _local_tag(pkg.version),
        "build": "cuda" if cuda else "rocm" if hip else "cpu",
        "cuda": cuda,
        "hip": hip,
        "cudnn": (wheels.get("cudnn") or {}).get("version") or bundled.get("cudnn"),
        "nccl": (wheels.get("nccl") or {}).get("version") or bundled.get("nccl"),
        "git_version": values.get("git_version"),
        "debug": values.get("debug"),
        "version_file": "found" if raw and raw.get("text") is not None else "missing",
    }


def tensorflow_info(raw: Mapping[str, Any] | None,
                    packages: Mapping[str, Package]) -> dict[str, Any]:
    name = next(n for n in ("tensorflow", "tensorflow-gpu", "tensorflow-cpu") if n in packages)
    values = parse_assignments((raw or {}).get("text"))
    nested = values.get("build_info")
    build: dict[str, Any] = nested if isinstance(nested, dict) else values
    return {
        "version": packages[name].version,
        "distribution": name,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "is_cuda_build": build.get("is_cuda_build"),
    }


def jax_info(raw: Mapping[str, Any] | None, packages: Mapping[str, Package]) -> dict[str, Any]:
    plugins = sorted(n for n in packages if re.match(r"jax-cuda\d+-(plugin|pjrt)$", n))
    cuda = re.match(r"jax-cuda(\d+)-", plugins[0]).group(1) if plugins else None  # type: ignore[union-attr]
    return {
        "version": packages["jax"].version if "jax" in packages else None,
        "jaxlib": packages["jaxlib"].version if "jaxlib" in packages else None,
        "cuda": cuda,
        "cuda_plugins": {n: packages[n].version for n in plugins},
    }


def cupy_info(raw: Mapping[str, Any] | None, packages: Mapping[str, Package]) -> dict[str, Any]:
    name = next(n for n in packages if n == "cupy" or n.startswith("cupy-"))
    match = re.match(r"cupy-cuda(\d+)x?$", name)
    return {"version": packages[name].version, "distribution": name,
            "cuda": match.group(1) if match else None}


#: (lock key, is it installed?, its section from the raw build files and the packages)
Detector = tuple[str, Callable[[Mapping[str, Any]], bool], Callable[[Any, Mapping[str, Any]], Any]]
DETECTORS: tuple[Detector, ...] = (
    ("torch", lambda p: "torch" in p, torch_info),
    ("tensorflow", lambda p: any(n in p for n in ("tensorflow", "tensorflow-gpu",
                                                  "tensorflow-cpu")), tensorflow_info),
    ("jax", lambda p: "jax" in p or "jaxlib" in p, jax_info),
    ("cupy", lambda p: any(n == "cupy" or n.startswith("cupy-") for n in p), cupy_info),
)


def frameworks(packages: list[Package], raw_files: Mapping[str, Any]) -> dict[str, Any]:
    """Framework section of the lock: only the frameworks actually installed."""
    by_name = {p.name: p for p in packages}
    out: dict[str, Any] = {}
    for key, detect, collect in DETECTORS:
        if detect(by_name):
            raw = raw_files.get("jaxlib" if key == "jax" else key)
            out[key] = collect(raw, by_name)
    libraries = cuda_libraries(by_name)
    if libraries:
        out["cuda_libraries"] = libraries
    return out
