"""One wheel installed with PyPA's ``installer``, read once and checked as it is written.

``installer`` offers two passes: ``validate_record()`` decompresses and hashes every file,
then ``install()`` decompresses and hashes them again for the new RECORD. Here the names,
hashes and sizes are checked against RECORD first without reading the files, and each file
is checked as installer writes it: the hash installer computed of the bytes it wrote must
be the wheel's RECORD entry. A file installer rewrites (a ``#!python`` script's shebang)
is checked by reading its member once more. What was written unchanged from a deflated
member is returned as a :class:`~envlock.image.layer.Member`, which the layer carries as
the wheel compressed it.

Several wheels may install at once, in any order (each as its download arrives): a path two
wheels write is left as installing them in the lock's order leaves it (``Claims``: the later
wheel's bytes and mode), and the whole tree is the same whatever the arrival order.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import Hash, RecordEntry
from installer.scripts import Script
from installer.sources import WheelFile
from installer.utils import copyfileobj_with_hashing

from envlock.image.layer import Member

_DEFLATED = zipfile.ZIP_DEFLATED


class Claims:
    """Which wheel (its place in the lock) writes each path of one staged tree, shared by
    the wheels installing into it at once. A path is written by the latest wheel in lock
    order that has it (namespace packages such as ``nvidia/__init__.py``: last wins, as
    pip installing in order leaves it): an earlier wheel arriving after a later one does
    not write it, and a later one waits until an earlier one being written is done."""

    def __init__(self, umask: int = 0o022) -> None:
        self.umask = umask  # read once by the caller: reading it sets it, process-wide
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[int, threading.Event]] = {}

    def claim(self, path: str, index: int) -> tuple[threading.Event, threading.Event | None
                                                    ] | None:
        """None: a later wheel writes ``path``; else (set when written, the earlier
        writer's event to wait for first, if any)."""
        mine = threading.Event()
        with self._lock:
            previous = self._owners.get(path)
            if previous is not None and previous[0] > index:
                return None
            self._owners[path] = (index, mine)
        return mine, previous[1] if previous is not None else None


def install_wheel(wheel: Path, scheme: dict[str, str], root: Path, *, interpreter: str,
                  claims: Claims | None = None, index: int = 0
                  ) -> tuple[dict[str, Member | None], list[tuple[str, int]]]:
    """Install ``wheel`` under ``root`` (``scheme``: installer's scheme -> path in the
    image). Returns each file written (arcname -> its member when unchanged from a
    deflated one, else None) and the ``.py`` files put in site-packages (path relative to
    it, size). ``claims``/``index``: shared with the wheels installing into the same tree,
    and this wheel's place in the lock. Raises what installer raises, and ValueError for a
    file that does not match RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        source = _Source(archive)
        destination = _Destination(
            scheme, interpreter=interpreter, script_kind="posix", hash_algorithm="sha256",
            bytecode_optimization_levels=(), destdir=str(root),
            overwrite_existing=True)  # namespace packages (nvidia/__init__.py): last wins
        destination.source, destination.wheel = source, str(wheel)
        destination.written, destination.sources = {}, []
        destination.claims, destination.index = claims or Claims(), index
        destination.skipped = False
        source.validate_record(validate_contents=False)  # names, hashes and sizes listed
        install(source, destination, {"INSTALLER": b"envlock\n"})
    return destination.written, destination.sources


class _Source(WheelFile):
    """The wheel, remembering which member ``install`` is writing."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        super().__init__(archive)
        self.archive = archive
        self.current: tuple[Any, BinaryIO, bool] | None = None

    def get_contents(self) -> Any:
        for element in super().get_contents():
            self.current = element
            yield element


class _Destination(SchemeDictionaryDestination):
    """Writes as installer does, then checks what it wrote against the wheel's RECORD."""

    source: _Source
    wheel: str
    written: dict[str, Member | None]
    sources: list[tuple[str, int]]
    claims: Claims
    index: int
    skipped: bool  # the last write_to_fs left the path to a later wheel

    def write_to_fs(self, scheme: Any, path: str, stream: BinaryIO, is_executable: bool
                    ) -> RecordEntry:
        """installer's write, thread-safe and order-free: the parents made as needed, the
        mode set from the umask read once, and a path a later wheel writes only hashed."""
        target = self._path_with_destdir(scheme, path)
        turn = self.claims.claim(str(target), self.index)
        self.skipped = turn is None
        if turn is None:
            hash_, size = copyfileobj_with_hashing(stream, _DISCARD, self.hash_algorithm)
            return RecordEntry(path, Hash(self.hash_algorithm, hash_), size)
        written, earlier = turn
        try:
            if earlier is not None:
                earlier.wait()
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                hash_, size = copyfileobj_with_hashing(stream, handle, self.hash_algorithm)
            target.chmod((0o777 if is_executable else 0o666) & ~self.claims.umask |
                         (0o111 if is_executable else 0))
        finally:
            written.set()
        return RecordEntry(path, Hash(self.hash_algorithm, hash_), size)

    def write_script(self, name: str, module: str, attr: str, section: Any) -> RecordEntry:
        """installer's, with the mode of ``write_to_fs`` (no umask read, nothing done to a
        script a later wheel writes)."""
        script_name, data = Script(name, module, attr, section).generate(
            self.interpreter, self.script_kind)
        with io.BytesIO(data) as stream:
            return self.write_to_fs("scripts", script_name, stream, is_executable=True)

    def write_file(self, scheme: Any, path: str | os.PathLike[str], stream: BinaryIO,
                   is_executable: bool) -> RecordEntry:
        record = super().write_file(scheme, path, stream, is_executable)
        arcname = f"{self.scheme_dict[scheme].strip('/')}/{os.fspath(path)}"
        current = self.source.current
        self.written[arcname] = None
        if current is not None and current[1] is stream:  # a member, not INSTALLER
            self.written[arcname] = self._check(current[0], record)
        if scheme in ("purelib", "platlib") and arcname.endswith(".py") and not self.skipped:
            self.sources.append((os.fspath(path), record.size or 0))
        return record

    def _check(self, elements: Any, written: RecordEntry) -> Member | None:
        """The member, if what was written is its RECORD entry byte for byte (and it is
        deflated); else the member itself must match RECORD."""
        expected = RecordEntry.from_elements(*elements)
        info = self.source.archive.getinfo(elements[0])
        if expected.hash_ is not None and written.hash_ is not None and \
                (expected.hash_.name, expected.hash_.value, expected.size) == \
                (written.hash_.name, written.hash_.value, written.size):
            if info.compress_type != _DEFLATED:
                return None
            return Member(self.wheel, info.header_offset, info.compress_size, info.CRC,
                          info.file_size)
        with self.source.archive.open(info) as again:
            if not expected.validate_stream(again):  # type: ignore[arg-type]
                raise ValueError(f"hash / size of {elements[0]} didn't match RECORD")
        return None


class _Discard(io.RawIOBase):
    """A sink that keeps nothing (a file a later wheel writes is only hashed)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


_DISCARD: BinaryIO = _Discard()  # type: ignore[assignment]
