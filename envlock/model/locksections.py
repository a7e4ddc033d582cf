"""The lock's mapping sections, typed: what each holds, and the checks a loaded lock gets.

Each section is a ``TypedDict`` (it is only data, written to YAML as is, so the lock's bytes
are exactly what the snapshot produced); ``total=False`` because older schemas and other hosts
leave keys out; ``REQUIRED_KEYS`` names the keys other code relies on, checked on load.
"""

from __future__ import annotations

from typing import Any, TypedDict


class CarriedInterpreter(TypedDict):
    kind: str  # python-build-standalone, pyenv
    prefix: str  # /root/.pyenv/versions/3.11.7
    digest: str  # sha256:… of the carried tree (model.pytree.tree_digest)
    files: int


class PythonSection(TypedDict, total=False):
    implementation: str  # CPython, PyPy
    version: str  # 3.11.7
    build: str
    executable: str
    prefix: str
    venv: bool
    abi: str  # cp311
    platform_tag: str  # manylinux_2_36_x86_64
    arch: str
    sys_path: list[str]
    #: The interpreter carried into the image as a layer (model.pytree); absent otherwise.
    carried: CarriedInterpreter


class Libc(TypedDict, total=False):
    family: str | None  # glibc, musl
    version: str | None


class OsSection(TypedDict, total=False):
    system: str  # Linux
    distro: str | None
    distro_version: str | None
    distro_codename: str
    pretty_name: str
    kernel: str | None
    libc: Libc
    arch: str
    container: str | None  # docker, podman, kubernetes, or None on a bare host
    hostname: str


class GpuSection(TypedDict, total=False):
    driver_version: str | None
    cuda_driver_version: str | None
    devices: list[dict[str, Any]]  # name, memory, compute capability, uuid-free
    status: str  # ok, no-gpu, error
    reason: str
    cuda_toolkit: dict[str, Any]  # version, path, from


class HostSection(TypedDict, total=False):
    cpu: dict[str, Any]  # model, vendor, arch, cores, isa_level, flags
    memory: dict[str, Any]  # total_bytes, limit_bytes
    shm: dict[str, Any]  # size_bytes


class GitSection(TypedDict, total=False):
    root: str
    commit: str
    branch: str | None
    remote: str | None
    remote_url: str | None  # credentials removed
    dirty: bool
    changes: dict[str, int]  # staged, unstaged, untracked
    diff_sha256: str | None
    diff: str | None
    diff_encoding: str  # base64 when the diff is not text
    untracked: list[dict[str, Any]]  # path, sha256 (or a symlink's target)
    withheld: list[str]  # untracked files left out as secrets, by path
    secret_scan: dict[str, Any]  # the detectors that ran
    submodules: list[dict[str, Any]]


class CodeSection(TypedDict, total=False):
    kind: str  # directory
    root: str
    files: list[dict[str, Any]]  # path, size, sha256
    symlinks: list[dict[str, Any]]
    withheld: list[str]  # files left out as secrets, by path
    total_bytes: int
    secret_scan: dict[str, Any]


class RuntimeSection(TypedDict, total=False):
    env: dict[str, str]  # the knobs that change numerics, secrets left out
    command: str | None
    withheld_env: list[str]


#: framework name (torch, tensorflow, jax) -> its build facts (version, local_tag, cuda, cudnn, ...)
Frameworks = dict[str, dict[str, Any]]


class IndexSection(TypedDict, total=False):
    index_url: str  # credentials removed
    extra_index_urls: list[str]
    find_links: list[str]
    no_index: bool
    uv_lock: dict[str, Any]  # path, sha256, disagree (model/uvlock.py)


#: the keys other code reads without a default, and their types: a loaded lock without one
#: fails on load, naming the field (model/lockfile.py), not deep inside a replay
REQUIRED_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "python": {"implementation": str, "version": str, "executable": str, "venv": bool,
               "platform_tag": str, "arch": str},
    "os": {"system": str, "distro": (str, type(None)), "distro_version": (str, type(None)),
           "kernel": (str, type(None)), "libc": dict, "arch": str, "container": (str, type(None))},
    "frameworks": {},
    "gpu": {"driver_version": (str, type(None)), "devices": list},
    "runtime": {"env": dict, "command": (str, type(None))},
    "index": {},
    "code": {"root": str, "files": list},
}
