"""Canonical image layers: the same files give the same layer bytes on any machine.

A layer is a tar of sorted entries with fixed times, normalized owners and modes (no user
or group names, no device numbers, no access times), compressed with gzip whose header
carries no name and no time. Its two digests are computed while it is written: the
``diff_id`` (sha256 of the tar, what an image config lists) and the blob digest (sha256
of the gzip stream, what a manifest lists and a registry stores).

Compression runs beside the packing, in blocks compressed side by side (zlib releases the
GIL), each primed with the 32 KiB before it and ended on a byte boundary, as pigz does: a
gzip member whose bytes depend on the data, the level and the block size only, never on
the number of threads.

A file installed unchanged from a wheel (a :class:`Member`) is not compressed again: the
wheel already holds its deflate stream, which is hash-pinned by the lock, so the layer
carries it as a gzip member of its own (RFC 1952: a gzip file is a series of members;
Docker, containerd, Podman and eStargz layers read them as one stream). That is most of
the bytes of a large environment (96 % of the torch wheel's), so the layer's compression
costs a fraction of the CPU it did, and its bytes still depend on its inputs only.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
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
#: A wheel member at least this large is carried as the wheel compressed it (below it, the
#: gzip framing and the tar header compressed apart cost more than compressing it again).
SPLICE_MIN = 16 << 10
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"  # magic, deflate, no flags, mtime 0
_RECORD = tarfile.RECORDSIZE
_NUL = bytes(tarfile.BLOCKSIZE)


class LayerError(ValueError):
    """A file changed under the layer writer, or a wheel member is not what it claimed."""


@dataclass(frozen=True)
class Member:
    """A wheel member whose deflate stream the layer carries as it is."""

    archive: str  # the wheel's path
    offset: int  # of its local file header
    compressed: int  # bytes of its deflate stream
    crc: int  # CRC-32 of its content, as the zip records it
    size: int  # bytes of its content


def raw_deflate(member: Member) -> Iterator[bytes]:
    """The member's deflate stream, read from its wheel."""
    with open(member.archive, "rb") as handle:
        handle.seek(member.offset)
        head = handle.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04" or head[8:10] != b"\x08\x00":
            raise LayerError(f"{member.archive}: no deflated member at {member.offset}")
        handle.seek(member.offset + 30 + int.from_bytes(head[26:28], "little")
                    + int.from_bytes(head[28:30], "little"))
        left = member.compressed
        while left:
            chunk = handle.read(min(left, _CHUNK))
            if not chunk:
                raise LayerError(f"{member.archive}: truncated member at {member.offset}")
            left -= len(chunk)
            yield chunk


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
        self.header = _GZIP_HEADER + xfl + b"\xff"  # OS "unknown": no name, no time
        self._emit(self.header)

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
        """End the current member."""
        self._submit(bytes(self.pending), last=True)
        self.pending.clear()
        while self.running:
            self._emit(self.running.popleft().result())
        self._emit(_trailer(self.crc, self.length))

    def splice(self, deflate: Iterator[bytes], crc: int, length: int) -> None:
        """A member of its own around a ready deflate stream of ``length`` bytes whose
        CRC-32 is ``crc``; the data written after it starts a new member."""
        self.finish()
        self._emit(_GZIP_HEADER + b"\x00\xff")
        for chunk in deflate:
            self._emit(chunk)
        self._emit(_trailer(crc, length))
        self._emit(self.header)
        self.crc = self.length = 0
        self.primer = b""

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _trailer(crc: int, length: int) -> bytes:
    return crc.to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(4, "little")


class _TarSink:
    """The tar stream: hashed (diff_id) and handed to the gzip sink in large chunks."""

    def __init__(self, gzip: _GzipSink) -> None:
        self.gzip = gzip
        self.sha = hashlib.sha256()
        self.buffer = bytearray()
        self.offset = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sha.update(data)
        self.offset += len(data)
        self.buffer += data
        if len(self.buffer) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.gzip.write(self.buffer)
            self.buffer.clear()

    def copy(self, path: Path, size: int) -> None:
        """``size`` bytes of the file at ``path``, compressed with the rest."""
        with path.open("rb") as handle:
            left = size
            while left:
                chunk = handle.read(min(left, _CHUNK))
                if not chunk:
                    raise LayerError(f"{path} shrank while the layer was written")
                left -= len(chunk)
                self.write(chunk)

    def splice(self, path: Path, member: Member) -> None:
        """The file at ``path``, carried as ``member``'s deflate stream: its bytes are
        hashed into the tar as read from disk and must be the member's (CRC-32)."""
        self.flush()
        crc = length = 0
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                self.sha.update(chunk)
                crc = zlib.crc32(chunk, crc)
                length += len(chunk)
        if (crc, length) != (member.crc, member.size):
            raise LayerError(f"{path} is not the member of {Path(member.archive).name} it "
                             "was installed from")
        self.offset += length
        self.gzip.splice(raw_deflate(member), crc, length)


class LayerWriter:
    """Entries in, one canonical gzip layer out (``close()`` gives its :class:`Layer`).

    Callers add entries in any order; they are written sorted by path, so the layer
    depends on the set of entries only. The tar is what ``tarfile`` writes for them (PAX
    headers, 512-byte blocks, two empty blocks and padding to a 10 KiB record), framed
    here so that a wheel member's deflate stream can be carried between the headers."""

    def __init__(self, out: BinaryIO, level: int = GZIP_LEVEL,
                 threads: int | None = None) -> None:
        self.gzip = _GzipSink(out, level, threads)
        self.sink = _TarSink(self.gzip)
        self.entries: dict[str, tuple[tarfile.TarInfo, Path | bytes | None,
                                      Member | None]] = {}

    def add_path(self, arcname: str, path: Path, uid: int = 0, gid: int = 0,
                 member: Member | None = None) -> None:
        """A file, directory or symlink from disk (hard links become copies). ``member``:
        the wheel member the file was installed from, unchanged."""
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
            self._put(info, path, uid, gid, member if member and
                      member.size == st.st_size >= SPLICE_MIN else None)
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

    def add_tree(self, prefix: str, root: Path, uid: int = 0, gid: int = 0,
                 members: dict[str, Member] | None = None) -> int:
        """Everything under ``root`` as ``prefix/…`` (``prefix`` itself not included).
        ``members``: arcname -> the wheel member that file was installed from."""
        count = 0
        for path in walk(root):
            arcname = f"{prefix}/{path.relative_to(root).as_posix()}"
            self.add_path(arcname, path, uid, gid, (members or {}).get(arcname))
            count += 1
        return count

    def _put(self, info: tarfile.TarInfo, source: Path | bytes | None, uid: int,
             gid: int, member: Member | None = None) -> None:
        info.name = info.name.strip("/")
        info.mtime, info.uid, info.gid = EPOCH, uid, gid
        info.uname = info.gname = ""
        self.entries[info.name] = (info, source, member)

    def content_size(self) -> int:
        """The bytes of the files added so far: what :meth:`close` writes, headers aside."""
        return sum(info.size for info, _source, _member in self.entries.values()
                   if info.isfile())

    def close(self, on_bytes: Callable[[int], None] | None = None) -> Layer:
        """Write the entries; ``on_bytes(n)`` after each file's ``n`` content bytes (the
        progress of a layer of a gigabyte)."""
        try:
            sink = self.sink
            for name in sorted(self.entries):
                info, source, member = self.entries[name]
                sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                if isinstance(source, Path):
                    if member is not None:
                        sink.splice(source, member)
                    else:
                        sink.copy(source, info.size)
                elif isinstance(source, bytes):
                    sink.write(source)
                if sink.offset % tarfile.BLOCKSIZE:
                    sink.write(_NUL[sink.offset % tarfile.BLOCKSIZE:])
                if on_bytes is not None and info.size:
                    on_bytes(info.size)
            sink.write(_NUL * 2)
            if sink.offset % _RECORD:
                sink.write(bytes(_RECORD - sink.offset % _RECORD))
            sink.flush()
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
