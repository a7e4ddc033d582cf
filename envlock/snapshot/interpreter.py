"""Runs the stdlib-only probe (``_probe.py``) inside the interpreter being locked.

The probe always runs in a fresh interpreter, even for envlock's own, so that the
snapshot sees exactly what a new ``python`` process sees, not envlock's sys.path.
Starting it returns at once (:class:`PendingProbe`); the other probes overlap it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
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
    process: subprocess.Popen[bytes]
    exe: str = ""

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.process.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise InterpreterError(self.python, f"did not answer within {PROBE_TIMEOUT_S} s",
                                   "check that it starts: run it with -c 'print(1)'") from None
        if self.process.returncode != 0:
            tail = _last_words(err)
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
        return data


def _last_words(err: bytes) -> str:
    """The last line of a failed probe's stderr, short, and never envlock's own probe
    source (a program that is not Python may echo its ``-c SOURCE`` argument)."""
    lines = err.decode(errors="replace").strip().splitlines()
    probe = PROBE_SOURCE.read_text(encoding="utf-8")
    lines = [line for line in lines if line.strip() and line.strip() not in probe]
    tail = lines[-1] if lines else "no output"
    if any(part in tail for part in probe.splitlines() if len(part.strip()) > 15):
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
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    try:
        process = proc.start([exe, "-c", source, *(["--deep"] if deep else [])], env=env)
    except OSError as exc:
        raise InterpreterError(python or exe, f"cannot be started: {exc.strerror or exc}",
                               "pass a Python interpreter, e.g. --python .venv/bin/python") from exc
    return PendingProbe(python=python or exe, process=process, exe=exe)
