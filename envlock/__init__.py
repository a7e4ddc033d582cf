"""envlock: lock, containerize and replay the exact environment of an ML experiment.

The public API is imported lazily so that ``envlock --help`` stays instant::

    import envlock
    lock = envlock.snapshot(python=".venv/bin/python", command="python train.py")
    envlock.write_lock(lock, "envlock.lock.yaml")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "snapshot", "load_lock", "write_lock", "diff_locks", "check",
           "capture", "autolog", "tracked_run", "EnvlockError"]

if TYPE_CHECKING:  # pragma: no cover
    from envlock.api import autolog, capture, tracked_run
    from envlock.errors import EnvlockError
    from envlock.model.diff import diff_locks
    from envlock.model.lockfile import load as load_lock
    from envlock.model.lockfile import write as write_lock
    from envlock.operations.check import check
    from envlock.snapshot import snapshot

_LAZY = {
    "snapshot": ("envlock.snapshot", "snapshot"),
    "load_lock": ("envlock.model.lockfile", "load"),
    "write_lock": ("envlock.model.lockfile", "write"),
    "diff_locks": ("envlock.model.diff", "diff_locks"),
    "check": ("envlock.operations.check", "check"),
    "EnvlockError": ("envlock.errors", "EnvlockError"),
    "capture": ("envlock.api", "capture"),
    "autolog": ("envlock.api", "autolog"),
    "tracked_run": ("envlock.api", "tracked_run"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'envlock' has no attribute {name!r}")
