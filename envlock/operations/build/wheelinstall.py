"""One wheel installed with PyPA's ``installer``, read once and checked as it is written.

``installer`` offers two passes: ``validate_record()`` decompresses and hashes every file,
then ``install()`` decompresses and hashes them again for the new RECORD. Here the names,
hashes and sizes are checked against RECORD first without reading the files, and each file
is checked as installer writes it: the hash installer computed of the bytes it wrote must
be the wheel's RECORD entry. A file installer rewrites (a ``#!python`` script's shebang)
is checked by reading its member once more. What was written unchanged from a deflated
member is returned as a :class:`~envlock.image.layer.Member`, which the layer carries as
the wheel compressed it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import RecordEntry
from installer.sources import WheelFile

from envlock.image.layer import Member

_DEFLATED = zipfile.ZIP_DEFLATED


def install_wheel(wheel: Path, scheme: dict[str, str], root: Path, *, interpreter: str
                  ) -> tuple[dict[str, Member | None], list[tuple[str, int]]]:
    """Install ``wheel`` under ``root`` (``scheme``: installer's scheme -> path in the
    image). Returns each file written (arcname -> its member when unchanged from a
    deflated one, else None) and the ``.py`` files put in site-packages (path relative to
    it, size). Raises what installer raises, and ValueError for a file that does not
    match RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        source = _Source(archive)
        destination = _Destination(
            scheme, interpreter=interpreter, script_kind="posix", hash_algorithm="sha256",
            bytecode_optimization_levels=(), destdir=str(root),
            overwrite_existing=True)  # namespace packages (nvidia/__init__.py): last wins
        destination.source, destination.wheel = source, str(wheel)
        destination.written, destination.sources = {}, []
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

    def write_file(self, scheme: Any, path: str | os.PathLike[str], stream: BinaryIO,
                   is_executable: bool) -> RecordEntry:
        record = super().write_file(scheme, path, stream, is_executable)
        arcname = f"{self.scheme_dict[scheme].strip('/')}/{os.fspath(path)}"
        current = self.source.current
        self.written[arcname] = None
        if current is not None and current[1] is stream:  # a member, not INSTALLER
            self.written[arcname] = self._check(current[0], record)
        if scheme in ("purelib", "platlib") and arcname.endswith(".py"):
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
