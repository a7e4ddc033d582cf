"""Write a file atomically: a temporary file beside it, fsynced, renamed onto it only when
everything worked and removed otherwise, so a reader never sees half a lockfile or half
an archive, and an interrupt leaves the old file as it was."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content becomes ``path``. ``mode``: the file's
    permissions (None: 0o666 less the umask, as ``open`` would make it)."""
    target = Path(path)
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: What ``tempfile.mkstemp`` opens with: a new file (never an existing one or a link), 0o600.
_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
          | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _create_beside(target: Path) -> tuple[int, str]:
    """A new temporary file in ``target``'s directory, as ``tempfile.mkstemp`` makes one
    but named by process id and a counter: importing tempfile (and random) took ~1.5 ms of
    every ``envlock lock``."""
    for attempt in range(10000):
        tmp = str(target.parent / f".{target.name}.{os.getpid()}-{attempt}.part")
        try:
            return os.open(tmp, _FLAGS, 0o600), tmp
        except FileExistsError:  # left by a process with the same id, or another writer
            continue
    raise FileExistsError(f"no free temporary name beside {target}")
