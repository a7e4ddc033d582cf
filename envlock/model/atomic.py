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
    import tempfile  # imports random: kept off the start-up of commands that write nothing

    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
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
