"""Canonical image layers: the same files give the same layer bytes on any machine.

A layer is a tar of sorted entries with fixed times, normalized owners and modes (no user
or group names, no device numbers, no access times), compressed with gzip whose header
carries no name and no time. Its two digests are computed while it is written: the
``diff_id`` (sha256 of the tar, what an image config lists) and the blob digest (sha256
of the gzip stream, what a manifest lists and a registry stores).

Compression runs beside the packing, in blocks compressed side by side (zlib releases the
GIL), each primed with the 32 KiB before it and ended on a byte boundary, as pigz does: one
ordinary gzip member whose bytes depend on the data, the level and the block size only,
never on the number of threads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: 1980-01-01T00:00:00Z: the time of every entry (the oldest a zip file can hold, so
#: wheels and layers agree), and of the images envlock assembles without a better one.
EPOCH = 315532800
#: zlib's fastest level, go-containerregistry's default for layers (crane, ko): for the
#: torch 2.13 environment 2.6x less CPU than level 6 for 15 % more bytes (299.0 MB
#: against 260.7 MB from 977 MB of tar); gunzip is as fast either way.
GZIP_LEVEL = 1
#: Uncompressed bytes per deflate block (pigz uses 128 KiB; larger blocks cost fewer
#: thread hand-overs and no measurable ratio).
BLOCK = 1 << 20
_WINDOW = 1 << 15  # what deflate can refer back to: the next block's primer
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    digest: str  # sha256 of the compressed blob
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of the compressed blob
    media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip"

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def normalized_mode(mode: int, is_dir: bool) -> int:
    """0755 for directories and executables, 0644 for other files; sticky kept (``/tmp``)."""
    if is_dir:
        return 0o755 | (mode & stat.S_ISVTX)
    return 0o755 if mode & 0o111 else 0o644


def compression_threads() -> int:
    """One per usable CPU, at most 8 (beyond that the tar packing is the bottleneck)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _deflate(block: bytes, primer: bytes, level: int, last: bool) -> bytes:
    """Raw deflate of one block; all but the last end with a sync flush (byte-aligned,
    not final), so the blocks concatenate into one stream."""
    extra = {"zdict": primer} if primer else {}
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL,
                                  0, **extra)
    return compressor.compress(block) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class _GzipSink:
    """A gzip member (RFC 1952) compressed block by block in a thread pool, hashed on the
    way out. ``finish()`` writes the rest; ``shutdown()`` always ends the pool."""

    def __init__(self, out: BinaryIO, level: int, threads: int | None = None) -> None:
        self.out, self.level = out, level
        self.sha = hashlib.sha256()
        self.size = 0
        self.crc = 0
        self.length = 0
        self.pending = bytearray()
        self.primer = b""
        self.threads = threads or compression_threads()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="envlock-gzip")
        self.running: deque[Future[bytes]] = deque()
        xfl = b"\x02" if level == 9 else b"\x04" if level == 1 else b"\x00"
        # magic, deflate, no flags, mtime 0, xfl, OS "unknown": no name, no time
        self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + xfl + b"\xff")

    def _emit(self, data: bytes) -> None:
        if data:
            self.sha.update(data)
            self.size += len(data)
            self.out.write(data)

    def write(self, data: bytes | bytearray) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.length += len(data)
        self.pending += data
        while len(self.pending) >= BLOCK:
            self._submit(bytes(self.pending[:BLOCK]), last=False)
            del self.pending[:BLOCK]

    def _submit(self, block: bytes, last: bool) -> None:
        self.running.append(self.pool.submit(_deflate, block, self.primer, self.level, last))
        self.primer = block[-_WINDOW:]
        while len(self.running) > 2 * self.threads:  # bounded memory, output in order
            self._emit(self.running.popleft().result())

    def finish(self) -> None:
        self._submit(bytes(self.pending), last=True)
        self.pending.clear()
        while self.running:
            self._emit(self.running.popleft().result())
        self._emit(self.crc.to_bytes(4, "little") +
                   (self.length & 0xFFFFFFFF).to_bytes(4, "little"))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _TarSink:
    """What tarfile writes to: hashed (diff_id) and handed on in large chunks."""

    def __init__(self, gzip: _GzipSink) -> None:
        self.gzip = gzip
        self.sha = hashlib.sha256()
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.buffer += data
        if len(self.buffer) >= _CHUNK:
            self.gzip.write(self.buffer)
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.gzip.write(self.buffer)
            self.buffer.clear()


class LayerWriter:
    """Entries in, one canonical gzip layer out (``close()`` gives its :class:`Layer`).

    Callers add entries in any order; they are written sorted by path, so the layer
    depends on the set of entries only."""

    def __init__(self, out: BinaryIO, level: int = GZIP_LEVEL,
                 threads: int | None = None) -> None:
        self.gzip = _GzipSink(out, level, threads)
        self.sink = _TarSink(self.gzip)
        self.entries: dict[str, tuple[tarfile.TarInfo, Path | bytes | None]] = {}

    def add_path(self, arcname: str, path: Path, uid: int = 0, gid: int = 0) -> None:
        """A file, directory or symlink from disk (hard links become copies)."""
        st = path.lstat()
        info = tarfile.TarInfo(arcname)
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            info.mode = 0o777
            self._put(info, None, uid, gid)
        elif stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, normalized_mode(st.st_mode, True)
            self._put(info, None, uid, gid)
        elif stat.S_ISREG(st.st_mode):
            info.mode, info.size = normalized_mode(st.st_mode, False), st.st_size
            self._put(info, path, uid, gid)
        else:
            raise ValueError(f"{path}: not a file, directory or symlink")

    def add_bytes(self, arcname: str, data: bytes, mode: int = 0o644, uid: int = 0,
                  gid: int = 0) -> None:
        info = tarfile.TarInfo(arcname)
        info.mode, info.size = normalized_mode(mode, False), len(data)
        self._put(info, data, uid, gid)

    def add_dir(self, arcname: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        info = tarfile.TarInfo(arcname)
        info.type, info.mode = tarfile.DIRTYPE, normalized_mode(mode, True)
        self._put(info, None, uid, gid)

    def add_tree(self, prefix: str, root: Path, uid: int = 0, gid: int = 0) -> int:
        """Everything under ``root`` as ``prefix/…`` (``prefix`` itself not included)."""
        count = 0
        for path in walk(root):
            self.add_path(f"{prefix}/{path.relative_to(root).as_posix()}", path, uid, gid)
            count += 1
        return count

    def _put(self, info: tarfile.TarInfo, source: Path | bytes | None, uid: int,
             gid: int) -> None:
        info.name = info.name.strip("/")
        info.mtime, info.uid, info.gid = EPOCH, uid, gid
        info.uname = info.gname = ""
        self.entries[info.name] = (info, source)

    def close(self) -> Layer:
        try:
            with tarfile.open(fileobj=self.sink, mode="w|",  # type: ignore[call-overload]
                              format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
                for name in sorted(self.entries):
                    info, source = self.entries[name]
                    if isinstance(source, Path):
                        with source.open("rb") as handle:
                            archive.addfile(info, handle)
                    elif isinstance(source, bytes):
                        import io

                        archive.addfile(info, io.BytesIO(source))
                    else:
                        archive.addfile(info)
            self.sink.flush()
            self.gzip.finish()
        finally:
            self.gzip.shutdown()
        return Layer(digest="sha256:" + self.gzip.sha.hexdigest(),
                     diff_id="sha256:" + self.sink.sha.hexdigest(), size=self.gzip.size)


def walk(root: Path) -> Iterator[Path]:
    """Every entry under ``root``, sorted, without following symlinked directories."""
    for current, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(current)
        for name in sorted([*dirs, *files]):
            yield base / name
