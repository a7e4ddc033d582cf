"""Probe: a uv project's ``uv.lock`` (its sha256, and whether the environment agrees)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from envlock.model import uvlock
from envlock.model.lockfile import Package


def uv_lock_section(project: str | Path | None, pkgs: Iterable[Package]
                    ) -> dict[str, Any] | None:
    """``index.uv_lock`` for a project with a ``uv.lock``; None without one."""
    if project is None:
        return None
    path = Path(project) / uvlock.FILENAME
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        problems = uvlock.disagreements(pkgs, uvlock.resolved(data.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        problems = [f"{uvlock.FILENAME} cannot be read as TOML ({exc})"]
    return uvlock.section(uvlock.FILENAME, hashlib.sha256(data).hexdigest(), problems)
