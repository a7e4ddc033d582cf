"""Host-wide exclusive locks between envlock processes (``fcntl.flock`` on a file).

Two captures of runs with the same, not yet built environment (parallel sweeps with
``envlock.autolog()``) must not build its image at the same time: they share the
staging tag and the final tag, and one removed what the other was about to use. The
second now waits for the first and then reuses its image. The kernel releases a flock
when its holder dies, so a killed build never leaves the lock held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def lock_dir() -> Path:
    """ENVLOCK_LOCK_DIR, else a folder in the system's temporary directory."""
    path = Path(os.environ.get("ENVLOCK_LOCK_DIR") or Path(tempfile.gettempdir()) /
                "envlock-locks")
    path.mkdir(mode=0o777, parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def exclusive(name: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock ``name`` (a file name); ``on_wait`` is called once if it is busy."""
    path = lock_dir() / name
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
