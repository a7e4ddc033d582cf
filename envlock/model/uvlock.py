"""Pure: a uv project's ``uv.lock`` beside the environment envlock locked.

uv keeps the project's resolution in ``uv.lock`` (TOML: one ``[[package]]`` table per
resolved distribution, with ``name``, ``version`` and ``source``). envlock records the
file's path (relative to the project) and sha256 in the lock's ``index`` section, as
``uv_lock`` (only for a project that has one), and says which installed packages
disagree with it: a version uv.lock does not resolve, or a package it does not list
(``uv pip install`` beside the project, a stale ``.venv``). uv.lock also resolves
packages for other platforms, extras and groups, so a locked package that is *not*
installed is not a disagreement.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envlock.model.lockfile import Lock, Package, normalize

FILENAME = "uv.lock"


def resolved(text: str) -> dict[str, set[str]]:
    """Each package name in a ``uv.lock`` -> the versions it resolves (several when
    uv forks the resolution by platform or Python version). The project itself (a
    ``virtual`` source) has no version and is left out; a project installed as a
    package (``uv init --package``) is listed with its version."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    document = tomllib.loads(text)
    out: dict[str, set[str]] = {}
    for entry in document.get("package") or []:
        name, version = entry.get("name"), entry.get("version")
        if isinstance(name, str) and isinstance(version, str):
            out.setdefault(normalize(name), set()).add(version)
    return out


def disagreements(packages: Iterable[Package], locked: dict[str, set[str]]) -> list[str]:
    """One line per installed package that ``uv.lock`` does not resolve as installed."""
    out = []
    for pkg in packages:
        versions = locked.get(pkg.name)
        if versions is None:
            out.append(f"{pkg.name} {pkg.version} (not in uv.lock)")
        elif pkg.version not in versions:
            out.append(f"{pkg.name} {pkg.version} (uv.lock: {', '.join(sorted(versions))})")
    return out


def section(path: str, sha256: str, problems: list[str]) -> dict[str, Any]:
    """The lock's ``index.uv_lock`` entry."""
    entry: dict[str, Any] = {"path": path, "sha256": f"sha256:{sha256}"}
    if problems:
        entry["disagree"] = problems
    return entry


def warnings(lock: Lock) -> list[str]:
    """What to tell the user about the lock's uv.lock, if it has one."""
    entry = lock.index.get("uv_lock") or {}
    problems = entry.get("disagree") or []
    if not problems:
        return []
    return [f"the environment disagrees with {entry.get('path', FILENAME)} in "
            f"{len(problems)} package(s): {'; '.join(problems)} (run `uv sync --frozen` "
            "to make .venv match uv.lock, then lock again)"]
