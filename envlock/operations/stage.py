"""The environment layer, staged on the host without a container (the daemonless builder).

* What the base image holds is read from its registry (``adapters.imagefs``): its Python
  (path and exact version), ``/etc/passwd`` and ``/etc/group``.
* The locked wheels (provisioned and hash-verified on the host) are installed with PyPA's
  ``installer`` into a staging root that mirrors the image's paths: the virtual
  environment ``/opt/envlock/venv`` with the layout ``python -m venv --without-pip``
  makes (``pyvenv.cfg`` pointing at the base's interpreter, ``bin/python*`` links,
  ``lib64``), console scripts whose shebang is the image's interpreter.
* Byte-code is compiled by an interpreter of the lock's exact version (on a capture
  host: the lock's own), hash-checked (PEP 552) and with ``PYTHONHASHSEED=0``, so the
  same sources give the same ``.pyc`` bytes on any machine; without such an interpreter
  the layer has none and says so (its label ``envlock.bytecode``).
* The non-root user is added to the base's own ``passwd``/``group``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from envlock.adapters import proc
from envlock.adapters.imagefs import Link, RemoteImage, read_files, resolve_link
from envlock.errors import EnvlockError, UsageError
from envlock.image import render
from envlock.image.layer import LayerWriter
from envlock.model.lockfile import Lock

_CANDIDATES = ("usr/local/bin/python3", "usr/bin/python3")


class StageError(EnvlockError):
    """A wheel could not be installed into the staged environment."""

    exit_code = 2


@dataclass(frozen=True)
class BaseFacts:
    """What the environment layer needs to know about its base image."""

    digest: str
    python: str | None  # "3.11.2"; None when no interpreter was found
    interpreter: str  # as a venv records it: "/usr/bin/python3"
    executable: str  # its real path: "/usr/bin/python3.11"
    passwd: str
    group: str


def base_facts(image: RemoteImage, cache: Path) -> BaseFacts:
    """The base's interpreter and users, read from its layers once per base digest."""
    cached = cache / "bases" / (image.digest.split(":", 1)[1] + ".json")
    try:
        return BaseFacts(**json.loads(cached.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    first = read_files(image, [*_CANDIDATES, "etc/passwd", "etc/group",
                               "var/lib/dpkg/status"], directories=["usr/bin",
                                                                    "usr/local/bin"])
    interpreter, executable, version = "", "", None
    for candidate in _CANDIDATES:
        real = resolve_link(first, candidate)
        if isinstance(first.get(real), bytes):
            interpreter, executable = "/" + candidate, "/" + real
            version = _version(image, first, real)
            break
    facts = BaseFacts(digest=image.digest, python=version, interpreter=interpreter,
                      executable=executable,
                      passwd=_text(first.get("etc/passwd")), group=_text(first.get("etc/group")))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(facts)))
    os.replace(tmp, cached)
    return facts


def _text(entry: bytes | Link | None) -> str:
    return entry.decode("utf-8", "replace") if isinstance(entry, bytes) else ""


def _version(image: RemoteImage, files: dict[str, bytes | Link], real: str) -> str | None:
    """The interpreter's exact version: the official images' ``PYTHON_VERSION``, else the
    version string compiled into the binary, else Debian's package version."""
    minor = re.search(r"python(3\.\d+)$", real)
    for item in (image.config.get("config") or {}).get("Env") or []:
        key, _, value = item.partition("=")
        if key == "PYTHON_VERSION" and (not minor or value.startswith(minor.group(1) + ".")):
            return value
    binary = files.get(real)
    if isinstance(binary, bytes) and minor:
        pattern = re.escape(minor.group(1)).encode() + rb"\.\d+"
        found = set(re.findall(rb"\x00(" + pattern + rb")\x00", binary))
        if len(found) == 1:
            return found.pop().decode()
    status = _text(files.get("var/lib/dpkg/status"))
    if minor:
        match = re.search(rf"Package: python{re.escape(minor.group(1))}-minimal\n(?:.+\n)*?"
                          r"Version: (\d+\.\d+\.\d+)", status)
        if match:
            return match.group(1)
    return None


def check_python(facts: BaseFacts, base: str, lock: Lock) -> None:
    wanted = lock.python["version"]
    if not facts.interpreter:
        raise UsageError(f"base image {base} has no python3 (looked for "
                         f"/{' and /'.join(_CANDIDATES)})",
                         f"pass --base-image with Python {wanted} (e.g. python:{wanted}-slim)")
    if facts.python != wanted:
        found = f"Python {facts.python}" if facts.python else \
            "a Python whose version could not be read"
        raise UsageError(f"base image {base} has {found}, the lock needs {wanted}",
                         f"pass --base-image with Python {wanted} (e.g. python:{wanted}-slim)")


# ---------------------------------------------------------------- the staged tree

def site_packages(lock: Lock) -> str:
    major, minor = lock.python["version"].split(".")[:2]
    return f"{render.VENV}/lib/python{major}.{minor}/site-packages"


def stage(lock: Lock, wheels: list[Path], facts: BaseFacts, root: Path) -> None:
    """Install ``wheels`` into the venv under ``root`` (which mirrors ``/``)."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    venv = root / render.VENV.strip("/")
    major, minor = lock.python["version"].split(".")[:2]
    _venv_layout(venv, facts, lock, f"{major}.{minor}")
    scheme = {"purelib": site_packages(lock), "platlib": site_packages(lock),
              "headers": f"{render.VENV}/include/site/python{major}.{minor}",
              "scripts": f"{render.VENV}/bin", "data": render.VENV}
    for wheel in wheels:
        destination = SchemeDictionaryDestination(
            scheme, interpreter=f"{render.VENV}/bin/python", script_kind="posix",
            hash_algorithm="sha256", bytecode_optimization_levels=(), destdir=str(root),
            overwrite_existing=True)  # namespace packages (nvidia/__init__.py): last wins, as pip
        try:
            with WheelFile.open(wheel) as source:
                source.validate_record()
                install(source, destination, {"INSTALLER": b"envlock\n"})
        except Exception as exc:  # noqa: BLE001 - installer raises plain exceptions
            raise StageError(f"wheel {wheel.name} cannot be installed: {exc}",
                             "its RECORD does not match its files: provision it again "
                             "(envlock build --no-cache) or rebuild the wheel") from exc


def _venv_layout(venv: Path, facts: BaseFacts, lock: Lock, minor: str) -> None:
    """What ``python3 -m venv --without-pip`` creates, for the base's interpreter."""
    (venv / "bin").mkdir(parents=True)
    (venv / "include").mkdir()
    (venv / "lib" / f"python{minor}" / "site-packages").mkdir(parents=True)
    (venv / "lib64").symlink_to("lib")
    (venv / "bin" / "python").symlink_to(facts.interpreter)
    (venv / "bin" / "python3").symlink_to("python")
    (venv / "bin" / f"python{minor}").symlink_to("python")
    home = facts.interpreter.rsplit("/", 1)[0]
    (venv / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\n"
        f"version = {lock.python['version']}\nexecutable = {facts.executable}\n"
        f"command = {facts.interpreter} -m venv --without-pip {render.VENV}\n")


# ---------------------------------------------------------------- byte-code

# Runs in the lock's interpreter, once per slice of the files (NUL-separated paths
# relative to the site directory on stdin). Not ``-I``: it implies ``-E``, which ignores
# PYTHONHASHSEED, and before Python 3.11 marshal writes frozenset constants in hash order.
# What ``-I`` did otherwise is done by hand: the caller drops every other PYTHON*
# variable, ``-s`` skips the user site, and the script takes the working directory out
# of sys.path before importing anything.
_COMPILE = """
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import os, py_compile
if sys.flags.hash_randomization:
    raise SystemExit("hash randomization is on: PYTHONHASHSEED=0 did not reach the compiler")
root, inside = sys.argv[1], sys.argv[2]
mode = py_compile.PycInvalidationMode.CHECKED_HASH
for rel in sys.stdin.buffer.read().split(b"\\0"):
    if rel:
        rel = os.fsdecode(rel)
        py_compile.compile(os.path.join(root, rel), dfile=inside + "/" + rel, quiet=2,
                           invalidation_mode=mode)
"""


def bytecode_interpreter(lock: Lock) -> str | None:
    """An interpreter of the lock's exact version on this host: the lock's own, then the
    one running envlock, then ``pythonX.Y`` on PATH."""
    import shutil

    wanted = lock.python["version"]
    major_minor = ".".join(wanted.split(".")[:2])
    candidates = [lock.python.get("executable"), sys.executable,
                  shutil.which(f"python{major_minor}")]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if not os.access(candidate, os.X_OK):
            continue
        try:
            out = proc.run([candidate, "-c", "import platform;"
                            "print(platform.python_implementation(),"
                            "platform.python_version())"], timeout=30)
        except OSError:  # CommandTimeout included
            continue
        if out.returncode == 0 and out.stdout.decode(errors="replace").split() == \
                ["CPython", wanted]:
            return candidate
    return None


def compile_bytecode(python: str, root: Path, lock: Lock, workers: int | None = None) -> None:
    """Hash-checked ``.pyc`` files for every ``.py`` in the staged site-packages, by
    ``workers`` processes (default: one per usable CPU) each compiling an interleaved
    slice of the sorted file list: a ``.pyc`` depends on its source only, so the bytes
    are the same for any number of processes."""
    from concurrent.futures import ThreadPoolExecutor

    site = root / site_packages(lock).strip("/")
    sources = python_sources(site)
    count = max(1, min(workers or usable_cpus(), len(sources) // _PER_PROCESS or 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"  # frozenset constants are marshalled in hash order
    command = [python, "-s", "-c", _COMPILE, str(site), site_packages(lock)]

    def compile_slice(part: list[str]) -> Any:
        return proc.run(command, env=env, input=b"\0".join(os.fsencode(p) for p in part),
                        timeout=3600)

    with ThreadPoolExecutor(count) as pool:
        outs = list(pool.map(compile_slice, [sources[i::count] for i in range(count)]))
    for out in outs:
        if out.returncode != 0:
            tail = out.stderr.decode(errors="replace").strip().splitlines()
            raise StageError(f"byte-compiling the environment failed: "
                             f"{tail[-1] if tail else out.returncode}")


#: Fewer files than this per process: not worth starting another interpreter.
_PER_PROCESS = 64


def python_sources(site: Path) -> list[str]:
    """Every ``.py`` under ``site`` (relative, sorted), outside ``__pycache__``."""
    found = []
    for current, dirs, files in os.walk(site):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(current, site)
        found += [name if rel == "." else f"{rel}/{name}" for name in files
                  if name.endswith(".py")]
    return sorted(found)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------- checks and the layer

def probe_staged(lock: Lock, root: Path) -> dict[str, Any]:
    """The stdlib probe (``--deep``: RECORD hashes) over the staged site-packages, run by
    envlock's interpreter; locations are reported as they are in the image."""
    from envlock.snapshot.interpreter import PROBE_SOURCE

    site = root / site_packages(lock).strip("/")
    prelude = ("import csv, hashlib, json, os, platform, site, sys, sysconfig\n"
               f"sys.path[:] = ['', {str(site)!r}, *sys.path]\n")
    out = proc.run([sys.executable, "-I", "-S", "-c",
                    prelude + PROBE_SOURCE.read_text(encoding="utf-8"), "--deep"],
                   timeout=600)
    if out.returncode != 0:
        raise StageError("the fidelity probe failed on the staged environment: "
                         + out.stderr.decode(errors="replace").strip()[-300:])
    raw = dict(json.loads(out.stdout))
    inside = site_packages(lock)
    for dist in raw["distributions"]:
        dist["location"] = dist["location"].replace(str(site), inside, 1)
    raw["python"]["version"] = lock.python["version"]  # the base's, checked before
    return raw


def fill_environment(writer: LayerWriter, root: Path, facts: BaseFacts) -> None:
    """The environment layer's entries: the venv, ``/workspace`` (the user's) and the
    user entries."""
    for name in ("opt", "opt/envlock"):
        writer.add_dir(name)
    writer.add_dir(render.VENV.strip("/"))
    writer.add_tree(render.VENV.strip("/"), root / render.VENV.strip("/"))
    writer.add_dir(render.WORKDIR.strip("/"), uid=render.USER_ID, gid=render.USER_ID)
    writer.add_dir("etc")
    writer.add_bytes("etc/passwd", _with_line(
        facts.passwd, render.USER_NAME,
        f"{render.USER_NAME}:x:{render.USER_ID}:{render.USER_ID}:{render.USER_NAME}:"
        f"{render.WORKDIR}:/bin/sh").encode())
    writer.add_bytes("etc/group", _with_line(
        facts.group, render.USER_NAME,
        f"{render.USER_NAME}:x:{render.USER_ID}:").encode())


def _with_line(text: str, name: str, line: str) -> str:
    if any(entry.split(":", 1)[0] == name for entry in text.splitlines()):
        return text
    return (text if not text or text.endswith("\n") else text + "\n") + line + "\n"
