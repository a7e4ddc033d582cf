"""Pure: which files a run opened count as its inputs.

:mod:`envlock.snapshot.readlog` records every path the run's Python process opens for
reading (an audit hook on ``open``); this module decides, with no I/O, which of them may
be inputs: not the interpreter, its packages, the tracked code, caches, MLflow's own
files, temporary files or the kernel's (``/proc``, ``/dev``, ``/sys``). Hugging Face and
torch hub caches are kept: their files are the run's pretrained weights. A file modified
after the run started is an output, not an input (:func:`split_outputs`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envlock.model import hub, runrecord

ARTIFACT = runrecord.INPUTS_READ_ARTIFACT  # under the run's envlock/ artifacts
TAG = runrecord.INPUTS_READ  # how many files the run read (the artifact exists)

#: Opened with any of these, a file is written, not only read.
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Never inputs: the kernel's, the system's configuration and programs, spools (the temp
#: dir is one of :class:`Exclusions`' prefixes).
SYSTEM_PREFIXES = ("/proc/", "/dev/", "/sys/", "/run/", "/etc/", "/usr/", "/bin/", "/sbin/",
                   "/lib/", "/lib64/", "/var/lib/", "/var/cache/", "/var/run/")
#: Folders whose files are never inputs: environments, caches, MLflow's and envlock's state.
SKIP_PARTS = frozenset({"site-packages", "dist-packages", "__pycache__", ".git", ".cache",
                        "mlruns", "mlartifacts", ".envlock", ".venv", ".mypy_cache",
                        ".pytest_cache", ".ipynb_checkpoints", ".config"})


def opened_for_reading(flags: int) -> bool:
    """``open``'s audit event ``flags``: opened read-only (no write, create, truncate)."""
    return not flags & _WRITES


@dataclass(frozen=True)
class Exclusions:
    """Where a run's reads are not inputs: ``prefixes`` (absolute folders: the interpreter's
    prefixes, the temp dir, envlock's cache), the project and its tracked files."""

    prefixes: tuple[str, ...] = ()
    project: str = ""
    tracked: frozenset[str] = frozenset()

    def keep(self, path: str) -> bool:
        """Whether an absolute ``path`` the run read may be an input."""
        path = posixpath.normpath(path)
        if hub.in_cache(path):  # a snapshot's file stands for the snapshot; refs, blobs not
            return hub.parse(path) is not None
        if "/torch/hub/" in path:
            return True  # torch.hub's downloaded weights
        if SKIP_PARTS & set(path.split("/")[:-1]) or path.endswith((".pyc", ".py")):
            return False
        if any(path.startswith(p) for p in self._blocked()):
            return False
        rel = self._relative(path)
        if rel is not None:  # the project's own files: data unless tracked code
            return rel not in self.tracked
        return not path.startswith(SYSTEM_PREFIXES)

    def _blocked(self) -> list[str]:
        """The prefixes as folders, but not one the project lies in (a project in /tmp)."""
        folders = [p.rstrip("/") + "/" for p in self.prefixes if p]
        return [f for f in folders if not (self.project.rstrip("/") + "/").startswith(f)]

    def _relative(self, path: str) -> str | None:
        root = self.project.rstrip("/")
        if root and path.startswith(root + "/"):
            return path[len(root) + 1:]
        return None


def candidates(opened: Iterable[str], exclusions: Exclusions) -> list[str]:
    """The opened paths that may be inputs, sorted, each once."""
    return sorted({posixpath.normpath(p) for p in opened if exclusions.keep(p)})


def split_outputs(mtimes: Mapping[str, int], started_ns: int) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of the files read, by mtime (ns): a file modified after the run
    started is something it wrote (a checkpoint read back, a log), never an input."""
    inputs = sorted(p for p, m in mtimes.items() if m <= started_ns)
    return inputs, sorted(p for p, m in mtimes.items() if m > started_ns)


def record(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    """The run's ``envlock/inputs-read.json``."""
    return {"version": 1, "read": sorted(inputs), "outputs": sorted(outputs)}


def read_paths(raw: Any) -> list[str]:
    """The inputs of an ``inputs-read.json`` (an unknown version or shape: none)."""
    if not isinstance(raw, dict) or raw.get("version") != 1:
        return []
    return [str(p) for p in raw.get("read") or () if isinstance(p, str) and p.startswith("/")]
