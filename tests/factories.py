"""Builders of small, valid locks for pure unit tests."""

from __future__ import annotations

from envlock.model.lockfile import Lock, Package, Source


def package(name: str, version: str, kind: str = "index", **source: object) -> Package:
    return Package(name=name, version=version, source=Source(kind=kind, **source),  # type: ignore[arg-type]
                   installer="pip", location="/v/lib/python3.11/site-packages",
                   dist_dir=f"{name.replace('-', '_')}-{version}.dist-info")


def make_lock(packages: tuple[Package, ...] | None = None, **overrides: object) -> Lock:
    fields: dict[str, object] = {
        "python": {"implementation": "cpython", "version": "3.11.7", "executable": "/v/bin/python",
                   "venv": True, "platform_tag": "manylinux_2_36_x86_64", "arch": "x86_64",
                   "abi": "cpython-311-x86_64-linux-gnu"},
        "os": {"system": "Linux", "distro": "debian", "distro_version": "12", "kernel": "6.1.0",
               "libc": {"family": "glibc", "version": "2.36"}, "arch": "x86_64",
               "container": None, "hostname": "box"},
        "packages": packages if packages is not None else (
            package("numpy", "2.1.0"), package("torch", "2.3.1+cu121", url="https://x/cu121")),
        "frameworks": {"torch": {"version": "2.3.1+cu121", "build": "cuda", "cuda": "12.1",
                                 "cudnn": "8.9.2.26", "nccl": "2.20.5"}},
        "gpu": {"driver_version": "535.104.05", "cuda_driver_version": "12.2",
                "devices": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB",
                             "compute_capability": "8.0", "memory_mib": 81920}]},
        "git": {"root": "/src", "commit": "a" * 40, "branch": "main", "dirty": False,
                "diff": None, "diff_sha256": None, "untracked": [], "submodules": []},
        "runtime": {"env": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}, "command": "python train.py"},
        "index": {"index_url": "https://pypi.org/simple", "extra_index_urls": []},
    }
    fields.update(overrides)
    return Lock(**fields)  # type: ignore[arg-type]
