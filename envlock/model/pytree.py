"""A self-contained interpreter tree carried into the image (pure logic).

When no base image has the run's exact Python (a uv-managed python-build-standalone
3.12.8 where the base has 3.12.7, pyenv's 3.11.7 on a Debian base of 3.11.2), envlock
carries the interpreter's own prefix into the image, at the same absolute path, as a
layer of its own. Which trees qualify, which of their files are carried, how the tree
is digested and how ``ldd``'s verdict reads are decided here; the walking, hashing and
running live in ``operations.build.interpreter``.

What is carried: the prefix minus what the environment does not use. Its
``lib/pythonX.Y/site-packages`` holds the interpreter's own packages, which the venv does
not see (``include-system-site-packages = false``): the directory is carried empty.
``lib/pythonX.Y/test`` (CPython's regression tests), ``__pycache__`` folders (their
time-stamped ``.pyc`` would not match the layer's canonical times) and static libraries
(``*.a``, for building extensions) are left out, and of ``bin/`` only the ``python*``
entries are kept (the rest are console scripts of the left-out packages).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: uv's managed interpreters: ~/.local/share/uv/python/cpython-3.12.8-linux-x86_64-gnu
#: (and the minor version's link to it, cpython-3.12-linux-x86_64-gnu)
_UV_NAME = re.compile(r"/uv/python/cpython-\d+\.\d+(\.\d+)?[^/]*$")
#: pyenv's: ~/.pyenv/versions/3.11.7
_PYENV_NAME = re.compile(r"/\.pyenv/versions/\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Entry:
    """One carried entry: its path relative to the prefix, ``file`` (with sha256 and
    executable bit), ``dir`` or ``link`` (with its target)."""

    path: str
    kind: str
    sha256: str = ""
    executable: bool = False
    target: str = ""

    def line(self) -> str:
        detail = {"file": f"{self.sha256} {'x' if self.executable else '-'}",
                  "link": self.target, "dir": ""}[self.kind]
        return f"{self.kind}\0{self.path}\0{detail}\n"


def base_prefix(python: Mapping[str, Any]) -> str | None:
    """The interpreter's own prefix, from the lock's ``sys_path`` (the standard library's
    ``PREFIX/lib/pythonX.Y``); None when it cannot be told."""
    major_minor = ".".join(str(python.get("version", "")).split(".")[:2])
    suffix = f"/lib/python{major_minor}"
    for entry in python.get("sys_path") or ():
        if isinstance(entry, str) and entry.endswith(suffix):
            return entry[: -len(suffix)] or None
    return None


def kind_of(prefix: str, has_python_json: bool) -> str | None:
    """``python-build-standalone`` (a ``PYTHON.json`` or uv's managed layout), ``pyenv``,
    or None: not a tree envlock carries (a system or conda interpreter)."""
    if has_python_json or _UV_NAME.search(prefix):
        return "python-build-standalone"
    if _PYENV_NAME.search(prefix):
        return "pyenv"
    return None


def carried(rel: str, major_minor: str) -> bool:
    """Whether the entry at ``rel`` (relative to the prefix) is carried."""
    parts = rel.split("/")
    if "__pycache__" in parts or (rel.endswith(".a") and not rel.startswith("include/")):
        return False
    if parts[0] == "bin" and len(parts) == 2:
        return parts[1].startswith("python")
    stdlib = ["lib", f"python{major_minor}"]
    if parts[:2] == stdlib and len(parts) > 3 and parts[2] in ("site-packages", "test"):
        return False
    return not (parts[:2] == stdlib and len(parts) == 3 and parts[2] == "test")


def tree_digest(entries: Iterable[Entry]) -> str:
    """The digest of a carried tree: every entry's kind, path and content, sorted."""
    sha = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        sha.update(entry.line().encode("utf-8", "surrogateescape"))
    return "sha256:" + sha.hexdigest()


def missing_libraries(ldd_output: str) -> dict[str, list[str]]:
    """``ldd FILE…``'s output as file -> the libraries it needs that were not found."""
    missing: dict[str, list[str]] = {}
    current = ""
    for line in ldd_output.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif "=> not found" in line:
            missing.setdefault(current, []).append(line.split("=>", 1)[0].strip())
    return missing


def essential(path: str, prefix: str) -> bool:
    """The interpreter itself and ``libpython``: without them nothing runs (an extension
    module of the standard library that cannot load, ``_tkinter`` say, is named only)."""
    rel = path[len(prefix):].lstrip("/") if path.startswith(prefix) else path
    return rel.startswith("bin/") or (rel.startswith("lib/libpython") and "/" not in rel[4:])
