"""Runs the stdlib-only probe (``_probe.py``) inside the interpreter being locked.

The probe always runs in a fresh interpreter, even for envlock's own, so that the
snapshot sees exactly what a new ``python`` process sees, not envlock's sys.path.
Starting it returns at once (:class:`PendingProbe`); the other probes overlap it.

Two files under envlock's cache directory (``$ENVLOCK_CACHE``, else ``~/.cache/envlock``)
spare the probe work it would repeat on every run: a copy of the probe, which the target
interpreter imports (so its own byte-code cache saves compiling ~400 lines each time;
``sys.path`` is restored before the probe looks at it), and, per interpreter, the
``files_digest`` of every RECORD keyed by its stat (see ``_probe.RecordCache``). Neither
changes what is recorded: a probe copy is used only when its content is the probe's, and
a RECORD is read again whenever its stat changed. Both live in directories of this user
that no one else may write to (made 0o700); when that cannot be had (a read-only home, a
cache shared with other users), the probe runs as before (``-c SOURCE``) and reads every
RECORD.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.adapters import proc
from envlock.errors import InterpreterError

PROBE_SOURCE = Path(__file__).with_name("_probe.py")
PROBE_TIMEOUT_S = 120


def resolve_python(python: str | None) -> str:
    """The interpreter to probe: envlock's own by default; a clear error when unusable."""
    if python is None:
        return sys.executable
    candidate = Path(python).expanduser()
    if candidate.is_dir():
        for sub in ("bin/python", "bin/python3", "Scripts/python.exe"):
            if (candidate / sub).exists():
                return str(candidate / sub)
        raise InterpreterError(python, "is a directory without bin/python",
                               "pass the interpreter, e.g. --python .venv/bin/python")
    if not candidate.exists():
        found = shutil.which(python) if os.sep not in python else None
        if found:
            return found
        raise InterpreterError(python, "no such file",
                               "pass an existing interpreter, e.g. --python .venv/bin/python")
    if not os.access(candidate, os.X_OK):
        raise InterpreterError(python, "is not executable",
                               "pass a Python interpreter, e.g. --python .venv/bin/python")
    return str(candidate.absolute())


@dataclass
class PendingProbe:
    python: str
    process: proc.Popen[bytes]
    exe: str = ""
    #: The RECORD digest cache file the probe read, to which its update is written.
    record_cache: Path | None = None
    #: The command's arguments (a program that is not Python may echo them).
    argv: tuple[str, ...] = ()

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.process.communicate(timeout=PROBE_TIMEOUT_S)
        except proc.TimeoutExpired:
            self.process.kill()
            raise InterpreterError(self.python, f"did not answer within {PROBE_TIMEOUT_S} s",
                                   "check that it starts: run it with -c 'print(1)'") from None
        if self.process.returncode != 0:
            tail = _last_words(err, self.argv)
            raise InterpreterError(self.python, f"is not a Python interpreter, or a broken "
                                   f"one (exit {self.process.returncode}: {tail})",
                                   "pass a Python 3.8+ interpreter, e.g. .venv/bin/python")
        try:
            data = json.loads(out)
        except ValueError:
            raise InterpreterError(self.python, "is not a Python interpreter (no probe output)",
                                   "pass e.g. --python .venv/bin/python") from None
        if not isinstance(data, dict) or data.get("probe_version") != 1:
            raise InterpreterError(self.python, "returned an unexpected probe answer")
        update = data.pop("record_cache", None)
        if isinstance(update, str) and self.record_cache is not None:
            _write_cache_file(self.record_cache, update.encode("utf-8"))
        return data


def _last_words(err: bytes, argv: tuple[str, ...] = ()) -> str:
    """The last line of a failed probe's stderr, short, and never envlock's own probe
    source or arguments (a program that is not Python may echo its ``-c SOURCE``)."""
    lines = err.decode(errors="replace").strip().splitlines()
    said = "\n".join((PROBE_SOURCE.read_text(encoding="utf-8"), *argv))
    lines = [line for line in lines if line.strip() and line.strip() not in said]
    tail = lines[-1] if lines else "no output"
    if any(part in tail for part in said.splitlines() if len(part.strip()) > 15):
        tail = "it echoed its arguments"
    return tail if len(tail) <= 160 else tail[:157] + "..."


#: Probes started speculatively by the CLI before it finished importing, by interpreter.
_PREFETCHED: dict[str, PendingProbe] = {}


def prefetch(python: str | None) -> None:
    """Start the probe early (the CLI calls this before importing typer): the ~40 ms the
    probe process needs then overlaps the CLI's own start-up. Any problem is left for
    the real call to report; an unused probe is stopped at exit."""
    try:
        pending = start_probe(python)
    except InterpreterError:
        return
    if not _PREFETCHED:
        atexit.register(_discard_prefetched)
    _PREFETCHED[pending.exe] = pending


def _discard_prefetched() -> None:
    for pending in _PREFETCHED.values():
        pending.process.kill()
        pending.process.wait()
    _PREFETCHED.clear()


def start_probe(python: str | None = None, deep: bool = False) -> PendingProbe:
    """Start the probe in ``python`` (resolved and validated) and return without waiting.
    ``deep`` also verifies every installed file against its RECORD hash."""
    exe = resolve_python(python)
    if exe in _PREFETCHED and not deep:
        return _PREFETCHED.pop(exe)
    source = PROBE_SOURCE.read_text(encoding="utf-8")
    argv, record_cache = _probe_argv(exe, source, deep)
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    try:
        process = proc.start([exe, *argv], env=env)
    except OSError as exc:
        raise InterpreterError(python or exe, f"cannot be started: {exc.strerror or exc}",
                               "pass a Python interpreter, e.g. --python .venv/bin/python") from exc
    return PendingProbe(python=python or exe, process=process, exe=exe,
                        record_cache=record_cache, argv=tuple(argv))


def _probe_argv(exe: str, source: str, deep: bool) -> tuple[list[str], Path | None]:
    """The probe's arguments for ``exe``, and the RECORD cache file it reads (None:
    none). ``--deep`` reads every RECORD anyway and runs from its source, as before."""
    if deep:
        return ["-c", source, "--deep"], None
    root = _cache_root()
    key = _checksum(source.encode("utf-8"))
    module = f"envlock_probe_{key}"
    if root is None or not _private_dir(root / "probe") or not _private_dir(root / "records"):
        return ["-c", source], None
    copy = root / "probe" / f"{module}.py"
    if not _holds(copy, source.encode("utf-8")):
        return ["-c", source], None
    # the copy's directory is on sys.path only while it is imported
    boot = (f"import sys; sys.path.insert(0, {str(copy.parent)!r})\ntry:\n"
            f"    import {module} as probe\nfinally:\n    del sys.path[0]\n"
            f"probe.run(sys.argv[1:])")
    interpreter = _checksum(exe.encode("utf-8", "surrogateescape"))
    records = root / "records" / f"{interpreter}-{key}.tsv"
    return ["-c", boot, "--record-cache", str(records)], records


def _cache_root() -> Path | None:
    """envlock's cache directory (as the wheel cache of ``operations.build.provision``)."""
    try:
        from envlock.model.cachehome import cache_home

        return cache_home().absolute()
    except RuntimeError:  # no home directory
        return None


def _private_dir(path: Path) -> bool:
    """Make ``path`` (0o700) if it is missing; True when it is a directory of this user
    that no one else may write to. The probe copy is run from it and RECORD digests are
    taken from it, so a cache directory shared with others is not used."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:
        return False
    return not hasattr(os, "geteuid") or info.st_uid == os.geteuid()


def _checksum(data: bytes) -> str:
    """A 64-bit name for ``data`` (contents are compared before use; this only names)."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _holds(path: Path, content: bytes) -> bool:
    """Whether ``path`` holds ``content``, writing it there first if it does not."""
    try:
        if path.read_bytes() == content:
            return True
    except OSError:
        pass
    try:
        for stale in path.parent.glob(f"__pycache__/{path.stem}.*"):  # from other bytes
            stale.unlink(missing_ok=True)
    except OSError:
        return False
    return _write_cache_file(path, content)


def _write_cache_file(path: Path, content: bytes) -> bool:
    """Write a cache file atomically; False (and nothing written) when that fails."""
    from envlock.model.atomic import atomic_file

    try:
        with atomic_file(path, 0o644) as handle:
            handle.write(content)
    except OSError:
        return False
    return True
