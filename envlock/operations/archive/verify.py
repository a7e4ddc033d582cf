"""Verify an archive: every member's digest and size against its MANIFEST, before
anything is imported."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from envlock.errors import UsageError
from envlock.operations.archive import inputs
from envlock.operations.archive.format import (
    _CHUNK,
    _SMALL,
    DOCUMENTS,
    ArchiveError,
    Contents,
    Member,
    check_contents,
    safe_name,
)
from envlock.operations.archive.streams import _Hashing

# ---------------------------------------------------------------- verify

def verify(path: str | Path) -> Contents:
    """Read the whole archive once, hash every file and check every digest. Nothing is
    written anywhere; a damaged or modified archive raises ArchiveError."""
    archive = Path(path)
    if not archive.is_file():
        raise UsageError(f"{archive}: no such archive file")
    members, small, digest = _scan(archive)
    try:
        image, manifest, run = check_contents(members, small)
        contents = Contents(path=archive, sha256=digest, members=members, image=image,
                            manifest=manifest, run=run)
        inputs.check(contents)
    except ArchiveError as exc:
        exc.message = f"{archive}: {exc.message}"
        exc.hint = exc.hint or "the archive is damaged or was modified; export it again"
        raise
    return contents


def _scan(archive: Path) -> tuple[dict[str, Member], dict[str, bytes], str]:
    members: dict[str, Member] = {}
    small: dict[str, bytes] = {}
    with archive.open("rb") as raw:
        reader = _Hashing(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    _scan_member(tar, info, members, small)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{archive}: not a readable tar archive ({exc})",
                               "the archive is damaged or truncated; export it again"
                               ) from exc
        while reader.read(_CHUNK):  # the end-of-archive padding counts for the file's sha256
            pass
    return members, small, reader.digest()


def _scan_member(tar: tarfile.TarFile, info: tarfile.TarInfo, members: dict[str, Member],
                 small: dict[str, bytes]) -> None:
    name = safe_name(info.name)
    if info.isdir():
        return
    if not info.isreg():
        raise ArchiveError(f"{name} is not a regular file (links and devices are refused)")
    if name in members:
        raise ArchiveError(f"{name} appears twice in the archive")
    handle = tar.extractfile(info)
    digest, kept = hashlib.sha256(), bytearray()
    keep = info.size <= _SMALL or name in DOCUMENTS
    for chunk in iter(lambda: handle.read(_CHUNK) if handle else b"", b""):
        digest.update(chunk)
        if keep:
            kept += chunk
    members[name] = Member(name, "sha256:" + digest.hexdigest(), info.size, info.offset_data)
    if keep:
        small[name] = bytes(kept)
