"""Byte streams of export and import: hashing readers, chunked blob readers, the tar
writer, and the atomic output file."""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from envlock.errors import UsageError
from envlock.image import oci
from envlock.model.atomic import atomic_file
from envlock.operations.archive.format import _CHUNK, ArchiveError

# ---------------------------------------------------------------- byte streams

class _Hashing:
    """Pass-through reader or writer that hashes every byte."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.hash, self.count = inner, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.count += len(data)
        return bytes(data)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.count += len(data)
        return int(self.inner.write(data))

    def tell(self) -> int:
        return self.count

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Writer:
    """Adds files to the archive tar (fixed owner, mode and time) and remembers each
    file's sha256 and size for MANIFEST.json."""

    def __init__(self, handle: BinaryIO, mtime: int) -> None:
        self.out = _Hashing(handle)
        self.tar = tarfile.TarFile(fileobj=self.out, mode="w",  # type: ignore[arg-type]
                                   format=tarfile.PAX_FORMAT, copybufsize=_CHUNK)
        self.mtime = mtime
        self.files: dict[str, tuple[str, int]] = {}
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            self._mkdir(parent)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, self.mtime, 0o644, 0, 0
        return info

    def _mkdir(self, name: str) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            self._mkdir(parent)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.mtime
        self.tar.addfile(info)
        self._dirs.add(name)

    def add_bytes(self, name: str, data: bytes) -> str:
        import io

        if name in self.files:
            return self.files[name][0]
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        self.files[name] = (oci.sha256_digest(data), len(data))
        return self.files[name][0]

    def add_stream(self, name: str, size: int, source: Any, expected: str | None) -> str:
        """Copy ``size`` bytes from ``source``; with ``expected``, they must hash to it."""
        if name in self.files:
            return self.files[name][0]
        reader = _Hashing(source)
        try:
            self.tar.addfile(self._info(name, size), reader)
        except OSError as exc:  # tarfile: "unexpected end of data"
            raise ArchiveError(f"{name}: the source ended early ({exc})") from exc
        digest = reader.digest()
        if expected and digest != expected:
            raise ArchiveError(f"{name}: the content does not match {expected}",
                               "the source changed while it was exported: try again")
        self.files[name] = (digest, size)
        return digest

    def close(self) -> None:
        self.tar.close()


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A temporary file next to ``path``, renamed onto it only when everything worked."""
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: directory {path.parent} does not exist")
    with atomic_file(path) as handle:
        yield handle
