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

import contextlib
import json
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from envlock import progress
from envlock.adapters import proc
from envlock.adapters.imagefs import Link, RemoteImage, read_files, resolve_link
from envlock.errors import EnvlockError, UsageError
from envlock.image import render
from envlock.image.layer import LayerWriter, Member
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
            return str(value)
    binary = files.get(real)
    if isinstance(binary, bytes) and minor:
        pattern = re.escape(minor.group(1)).encode() + rb"\.\d+"
        found: set[bytes] = set(re.findall(rb"\x00(" + pattern + rb")\x00", binary))
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
        from envlock.operations.build.interpreter import HINT

        raise UsageError(f"base image {base} has {found}, the lock needs {wanted}",
                         f"pass --base-image with Python {wanted} (e.g. python:{wanted}-slim)"
                         f", or {HINT}")


# ---------------------------------------------------------------- the staged tree

def site_packages(lock: Lock) -> str:
    major, minor = lock.python["version"].split(".")[:2]
    return f"{render.VENV}/lib/python{major}.{minor}/site-packages"


#: Where a build stages its environment when ``ENVLOCK_STAGING_DIR`` does not say: memory,
#: when there is room for it. Creating tens of thousands of files on a disk file system
#: costs far more than writing their bytes (on the project's machines, extracting the
#: torch wheel took 11.4 s to ext4 and 2.9 s to tmpfs); the tree lives for one build.
SHM = Path("/dev/shm")


def staging_parent(wheels: list[Path] | None = None, size: int | None = None) -> Path:
    """The directory to stage ``wheels`` (or ``size`` bytes of installed files) under:
    ``$ENVLOCK_STAGING_DIR``; else ``/dev/shm`` when it has room for twice what the wheels
    hold uncompressed and the memory available is three times that; else the temporary
    directory."""
    import tempfile

    chosen = os.environ.get("ENVLOCK_STAGING_DIR", "").strip()
    if chosen:
        return Path(chosen)
    try:
        need = 2 * (size if size is not None else unpacked_size(wheels or []))
        room = os.statvfs(SHM)
        if os.access(SHM, os.W_OK) and room.f_bavail * room.f_frsize >= need and \
                _available_memory() >= 1.5 * need:
            return SHM
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def installed_size(lock: Lock) -> int | None:
    """Bytes the locked packages installed on the capture host, from their RECORDs' sizes
    (what staging them takes, known before any wheel is downloaded); None when a package's
    RECORD is not on this host (a rebuild elsewhere: the wheels tell, once provisioned)."""
    import csv

    total = 0
    for pkg in lock.packages:
        if not pkg.location or not (pkg.dist_dir or "").endswith(".dist-info"):
            return None
        try:
            with open(os.path.join(pkg.location, str(pkg.dist_dir), "RECORD"),
                      encoding="utf-8", newline="") as handle:
                total += sum(int(row[2]) for row in csv.reader(handle)
                             if len(row) > 2 and row[2].isdigit())
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
    return total


def unpacked_size(wheels: list[Path]) -> int:
    """Bytes of the wheels' files, from their zip directories (nothing is decompressed)."""
    import zipfile

    total = 0
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            total += sum(info.file_size for info in archive.infolist())
    return total


def _available_memory() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def stage(lock: Lock, wheels: list[Path], facts: BaseFacts, root: Path,
          compiler: Compiler | None = None) -> dict[str, Member]:
    """Install ``wheels`` into the venv under ``root`` (which mirrors ``/``), in order
    (:class:`Installs`, one at a time). Returns the files written unchanged from a
    deflated member, by arcname (the layer carries their deflate streams as they are)."""
    order = [str(index) for index in range(len(wheels))]
    with Installs(lock, facts, root, order, compiler, workers=1) as installs:
        for name, wheel in zip(order, wheels, strict=True):
            installs.add(name, wheel)
        return installs.finish()


def install_workers() -> int:
    """Wheels installed at once: ``$ENVLOCK_INSTALLS`` (1–16), else half the usable CPUs
    (1 to 4; the byte-compiling processes take the other half). Inflating and hashing
    release the GIL, but on 2 cores 2 threads installed the CUDA wheels no faster than
    one (54.1 s against 50.7 s, bench/README.md)."""
    value = os.environ.get("ENVLOCK_INSTALLS", "").strip()
    return min(16, max(1, int(value))) if value.isdigit() else \
        max(1, min(4, usable_cpus() // 2))


class Installs:
    """The venv under ``root`` (which mirrors ``/``), each wheel installed as soon as it is
    added (``add``, e.g. when its download is verified) by a bounded pool of threads. The
    result does not depend on the order the wheels arrive in: a path two wheels write is
    left as installing them in ``order`` leaves it (``wheelinstall.Claims``: a later
    wheel's file replaces an earlier one's, as pip does), the members are merged in that
    order, and a ``.pyc`` depends on its source and path only. Each wheel is read once:
    every file is hashed as it is written and checked against the wheel's RECORD.
    ``compiler``: given each wheel's ``.py`` files as soon as it is installed, so byte-
    compiling overlaps the installs. Use as a context manager; ``finish()`` waits."""

    def __init__(self, lock: Lock, facts: BaseFacts, root: Path, order: list[str],
                 compiler: Compiler | None = None, workers: int | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from envlock.operations.build.wheelinstall import Claims

        venv = root / render.VENV.strip("/")
        major, minor = lock.python["version"].split(".")[:2]
        _venv_layout(venv, facts, lock, f"{major}.{minor}")
        self.scheme = {"purelib": site_packages(lock), "platlib": site_packages(lock),
                       "headers": f"{render.VENV}/include/site/python{major}.{minor}",
                       "scripts": f"{render.VENV}/bin", "data": render.VENV}
        self.root, self.compiler = root, compiler
        self.order = {name: index for index, name in enumerate(order)}
        umask = os.umask(0o022)
        os.umask(umask)  # read before any thread creates a file
        self.claims = Claims(umask)
        self.pool = ThreadPoolExecutor(workers or install_workers(),
                                       thread_name_prefix="envlock-install")
        self.futures: dict[int, Any] = {}
        self.guard = threading.Lock()
        self.moving = progress.transfer(f"installing {len(order)} wheels")

    def __enter__(self) -> Installs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.moving.close()

    def add(self, name: str, wheel: Path) -> None:
        """Install ``wheel`` (``name``: its entry in ``order``) beside the others."""
        index = self.order[name]
        with self.guard:  # the total grows as the wheels arrive
            self.moving.total = (self.moving.total or 0) + wheel.stat().st_size
        self.futures[index] = self.pool.submit(self._one, index, wheel)

    def _one(self, index: int, wheel: Path) -> dict[str, Member | None]:
        written, sources = _install(wheel, self.scheme, self.root, self.claims, index)
        if self.compiler is not None:
            self.compiler.send(sources)
        with self.guard:
            self.moving.advance(wheel.stat().st_size)  # of the wheels' bytes
        return dict(written)

    def finish(self) -> dict[str, Member]:
        """Wait for every wheel added; the members, merged in ``order``; the first
        failure in that order raised."""
        members: dict[str, Member] = {}
        for index in sorted(self.futures):
            for arcname, member in self.futures[index].result().items():
                if member is None:
                    members.pop(arcname, None)
                else:
                    members[arcname] = member
        return members


def _install(wheel: Path, scheme: dict[str, str], root: Path, claims: Any, index: int
             ) -> tuple[Any, Any]:
    from envlock.operations.build.wheelinstall import install_wheel

    try:
        return install_wheel(wheel, scheme, root, interpreter=f"{render.VENV}/bin/python",
                             claims=claims, index=index)
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

# Runs in the lock's interpreter, one process per CPU, compiling the files named on stdin
# (NUL-terminated paths relative to the site directory) as they arrive. Not ``-I``: it
# implies ``-E``, which ignores PYTHONHASHSEED, and before Python 3.11 marshal writes
# frozenset constants in hash order. What ``-I`` did otherwise is done by hand: the caller
# drops every other PYTHON* variable, ``-s`` skips the user site, and the script takes the
# working directory out of sys.path before importing anything.
_COMPILE = """
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import os, py_compile
if sys.flags.hash_randomization:
    raise SystemExit("hash randomization is on: PYTHONHASHSEED=0 did not reach the compiler")
root, inside = sys.argv[1], sys.argv[2]
mode = py_compile.PycInvalidationMode.CHECKED_HASH
pending = b""
while True:
    chunk = sys.stdin.buffer.read1(1 << 16)
    *names, pending = (pending + chunk).split(b"\\0")
    for rel in names:
        if rel:
            rel = os.fsdecode(rel)
            py_compile.compile(os.path.join(root, rel), dfile=inside + "/" + rel, quiet=2,
                               invalidation_mode=mode)
    if not chunk:
        break
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


class Compiler:
    """Byte-compiles the staged site-packages with ``workers`` processes of the lock's
    interpreter (default: one per usable CPU), fed while the wheels are still being
    installed: each file goes to the process with the fewest source bytes so far, a file
    sent again (a later wheel replaced it) to the same process, which compiles it after
    the first time. A ``.pyc`` depends on its source and path only, so the bytes are the
    same for any number of processes. Use as a context manager; ``finish()`` compiles
    what no wheel announced and waits."""

    def __init__(self, python: str, root: Path, lock: Lock, workers: int | None = None
                 ) -> None:
        import tempfile

        self.site = root / site_packages(lock).strip("/")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONHASHSEED"] = "0"  # frozenset constants are marshalled in hash order
        command = [python, "-s", "-c", _COMPILE, str(self.site), site_packages(lock)]
        self.errors = [tempfile.TemporaryFile()  # noqa: SIM115 - closed by __exit__
                       for _ in range(workers or usable_cpus())]
        self.procs = [proc.feed(command, env=env, stderr=err) for err in self.errors]
        self.load = [0] * len(self.procs)
        self.owner: dict[str, int] = {}
        self.guard = threading.Lock()  # send() is called by the installing threads

    def __enter__(self) -> Compiler:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.procs:
            if process.poll() is None:
                process.kill()
                process.wait()
        for err in self.errors:
            err.close()

    def send(self, sources: list[tuple[str, int]]) -> None:
        """Compile these ``(path relative to site-packages, size)`` files."""
        with self.guard:
            batches: dict[int, list[bytes]] = {}
            for rel, size in sources:
                index = self.owner.get(rel)
                if index is None:
                    index = self.owner[rel] = self.load.index(min(self.load))
                self.load[index] += size + 1024  # a file's fixed cost, beside its size
                batches.setdefault(index, []).append(os.fsencode(rel) + b"\0")
            for index, names in batches.items():
                self._write(index, b"".join(names))

    def _write(self, index: int, data: bytes) -> None:
        stdin = self.procs[index].stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except BrokenPipeError:
            pass  # the process ended: finish() reports why

    def finish(self) -> None:
        """Compile every ``.py`` not sent yet, then wait for all of it."""
        rest = [(rel, 0) for rel in python_sources(self.site) if rel not in self.owner]
        self.send(rest)
        for process in self.procs:
            if process.stdin:
                with contextlib.suppress(BrokenPipeError):  # it ended: its status says why
                    process.stdin.close()
        for process, err in zip(self.procs, self.errors, strict=True):
            if process.wait() != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()
                raise StageError(f"byte-compiling the environment failed: "
                                 f"{tail[-1] if tail else process.returncode}")


def compile_bytecode(python: str, root: Path, lock: Lock, workers: int | None = None) -> None:
    """Hash-checked ``.pyc`` files for every ``.py`` in the staged site-packages."""
    sources = python_sources(root / site_packages(lock).strip("/"))
    count = max(1, min(workers or usable_cpus(), len(sources) // _PER_PROCESS or 1))
    with Compiler(python, root, lock, count) as compiler:
        compiler.finish()


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
    future = "from __future__ import annotations\n"  # must stay the program's first line
    prelude = (future + "import csv, hashlib, json, os, platform, site, sys, sysconfig\n"
               f"sys.path[:] = ['', {str(site)!r}, *sys.path]\n")
    source = PROBE_SOURCE.read_text(encoding="utf-8").replace(future, "", 1)
    out = proc.run([sys.executable, "-I", "-S", "-c", prelude + source, "--deep"],
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


#: Where the daemon-free proof ran, as the fidelity result names it.
ROOTFS_PROOF = "image's file system (OCI runtime, no engine)"


def probe_in_rootfs(lock: Lock, root: Path, rootfs: Path,
                    binds: list[tuple[Path, str]] | None = None) -> dict[str, Any]:
    """The stdlib probe (``--deep``) run by an OCI runtime in the image as it will be: the
    base's extracted file system with the staged venv bound read-only where the layer
    puts it, the image's own interpreter, no network, no capabilities: what the engine
    proved after ``docker load``, without loading anything. It runs as the staged files'
    owner (root, without capabilities): under a umask of 077 they are that user's alone
    on the host, while the layer gives them their canonical modes. ``binds``: more trees
    bound read-only (a carried interpreter, at its prefix)."""
    from envlock.adapters import ociruntime
    from envlock.snapshot.interpreter import PROBE_SOURCE

    venv = render.VENV.strip("/")
    code, out, err = ociruntime.run(
        rootfs, [f"{render.VENV}/bin/python", "-c", PROBE_SOURCE.read_text(), "--deep"],
        binds=[(root / venv, render.VENV), *(binds or [])], user=(os.getuid(), os.getgid()))
    if code != 0:
        raise StageError(f"the fidelity probe failed in the image's file system (exit "
                         f"{code}): " + err.decode(errors="replace").strip()[-300:])
    return dict(json.loads(out))


def fill_environment(writer: LayerWriter, root: Path, facts: BaseFacts,
                     members: dict[str, Member] | None = None) -> None:
    """The environment layer's entries: the venv, ``/workspace`` (the user's) and the
    user entries. ``members``: files installed unchanged from wheel members (``stage``)."""
    for name in ("opt", "opt/envlock"):
        writer.add_dir(name)
    writer.add_dir(render.VENV.strip("/"))
    writer.add_tree(render.VENV.strip("/"), root / render.VENV.strip("/"), members=members)
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
