"""The files a run's Python process reads, seen by an audit hook on ``open``.

:func:`recorder` installs one hook (``sys.addaudithook``; hooks cannot be removed, so it
is switched off instead). The hook's hot path only adds the path to a set: no I/O, no
filtering. At the end of the run :meth:`Recorder.finish` sorts the paths out
(:mod:`envlock.model.readlog`: not the interpreter, packages, tracked code, caches, temp
files) and stats the rest once: a file modified after recording began is an output.
Loaders that bypass Python's ``open`` (safetensors' mmap, C readers) are not seen; the hub
cache entries they come from are (their ``config.json`` is read with ``open``).
"""

from __future__ import annotations

import contextlib
import os
import site
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from envlock.model import readlog


class Recorder:
    """Paths opened for reading while :attr:`active` (see the module docs)."""

    def __init__(self) -> None:
        self.opened: set[str] = set()
        self.active = False
        self.started_ns = 0
        self._installed = False

    def start(self) -> None:
        self.opened.clear()
        self.started_ns = time.time_ns()
        self.active = True
        if not self._installed:
            sys.addaudithook(self.hook)
            self._installed = True

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not self.active:
            return
        try:
            path, _mode, flags = args
            if isinstance(path, int) or not readlog.opened_for_reading(flags or 0):
                return
            path = os.fsdecode(path)
            self.opened.add(path if path.startswith("/") else os.path.join(os.getcwd(), path))
        except Exception:  # noqa: BLE001  an audit hook must never break the run's open()
            return

    def finish(self, project: Path) -> tuple[list[str], list[str]]:
        """(inputs, outputs) read since :meth:`start`; recording stops."""
        self.active = False
        exclusions = readlog.Exclusions(prefixes=environment_prefixes(),
                                        project=str(project.resolve()),
                                        tracked=frozenset(tracked(project)))
        mtimes = {}
        for path in readlog.candidates(self.opened, exclusions):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if stat.S_ISREG(st.st_mode):
                    mtimes[path] = st.st_mtime_ns
        return readlog.split_outputs(mtimes, self.started_ns)


def environment_prefixes() -> tuple[str, ...]:
    """Folders whose files are the environment, not data: the interpreter's prefixes, its
    site-packages, the temp dir and envlock's cache."""
    from envlock.snapshot.inputs import cache_root

    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             tempfile.gettempdir(), str(cache_root().parent)}
    with contextlib.suppress(AttributeError):
        found.update(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        found.add(site.getusersitepackages())
    return tuple(sorted({q for p in found if p for q in (p, os.path.realpath(p))}))


def tracked(project: Path) -> set[str]:
    """The project's tracked files, project-relative (none outside git)."""
    from envlock.snapshot.inputs import git_files

    with contextlib.suppress(Exception):
        return git_files(project)[0]
    return set()


_recorder: Recorder | None = None


def recorder() -> Recorder:
    """The process's one recorder (one audit hook, however often autolog is called)."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder()
    return _recorder
