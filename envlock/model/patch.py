"""Pure: a git diff (``git diff --binary`` output) in files and hunks, so that the hunks
holding a secret can be left out of the recorded diff while the rest still applies
(``git apply`` finds each remaining hunk by its context and its old-side position, which
dropping another hunk does not change).

A hunk goes when a secret's line (numbered in the new file) falls in its new-side range,
context lines included (they carry text too). A file whose every hunk goes, or whose
change is binary, goes whole — as a secret file named on the deny list would.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    header: bytes  # the ``@@ … @@`` line
    lines: list[bytes]
    new_start: int
    new_count: int

    def covers(self, line: int) -> bool:
        return self.new_start <= line < self.new_start + self.new_count

    @property
    def label(self) -> str:
        """The hunk's position, ``@@ -3,2 +3,4 @@`` (never its text)."""
        return self.header.split(b" @@", 1)[0].decode("ascii", "replace") + " @@"


@dataclass
class FilePatch:
    header: list[bytes]
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str | None:
        """The file's path in the work tree (its new path); None for a deletion."""
        for line in self.header:
            if line.startswith((b"+++ ", b"rename to ", b"copy to ")):
                text = line.split(b" ", 2)[-1] if not line.startswith(b"+++ ") \
                    else line[4:]
                name = _unquote(text.rstrip(b"\n"))
                if name == "/dev/null":
                    return None
                return name[2:] if line.startswith(b"+++ ") else name
        return _same_path(self.header[0])

    @property
    def binary(self) -> bool:
        return any(line.startswith((b"GIT binary patch", b"Binary files "))
                   for line in self.header)

    def to_bytes(self) -> bytes:
        return b"".join(self.header) + b"".join(h.header + b"".join(h.lines)
                                                 for h in self.hunks)


def split(diff: bytes) -> list[FilePatch]:
    """The file sections of a diff, each with its hunks; the bytes rejoin exactly."""
    parts = diff.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    files: list[FilePatch] = []
    for line in lines:
        match = _HUNK.match(line)
        if line.startswith(b"diff --git ") or not files:
            files.append(FilePatch(header=[line]))
        elif match and not files[-1].binary:
            count = 1 if match.group(2) is None else int(match.group(2))
            files[-1].hunks.append(Hunk(line, [], int(match.group(1)), count))
        elif files[-1].hunks:
            files[-1].hunks[-1].lines.append(line)
        else:
            files[-1].header.append(line)
    return files


def withhold(diff: bytes, secrets: Mapping[str, Iterable[int]]
             ) -> tuple[bytes, dict[str, list[str] | None]]:
    """``diff`` without the hunks that hold a secret line of ``secrets`` (path -> line
    numbers in the new file). Also, per path touched: the labels of the hunks left out, or
    None when the whole file was. A path whose secret lies outside every hunk (committed
    text the diff does not carry) is not touched."""
    outcome: dict[str, list[str] | None] = {}
    kept: list[FilePatch] = []
    for patch in split(diff):
        path = patch.path
        lines = set(secrets.get(path, ())) if path is not None else set()
        dropped = [h for h in patch.hunks if any(h.covers(n) for n in lines)]
        if path is None or not lines or not (dropped or patch.binary):
            kept.append(patch)
        elif patch.binary or len(dropped) == len(patch.hunks):
            outcome[path] = None
        else:
            outcome[path] = [h.label for h in dropped]
            patch.hunks = [h for h in patch.hunks if all(h is not d for d in dropped)]
            kept.append(patch)
    return b"".join(p.to_bytes() for p in kept), outcome


def _unquote(text: bytes) -> str:
    """A path as git writes it: plain, or C-quoted (``"b/caf\\303\\251.txt"``)."""
    if text.startswith(b'"') and text.endswith(b'"'):
        text = codecs.escape_decode(text[1:-1])[0]
    return text.decode("utf-8", "surrogateescape")


def _same_path(header: bytes) -> str | None:
    """The path of ``diff --git a/P b/P`` (a change that keeps its name)."""
    rest = header[len(b"diff --git "):].rstrip(b"\n")
    if rest.startswith(b'"'):
        quoted = re.match(rb'("(?:[^"\\]|\\.)*") ("(?:[^"\\]|\\.)*"|\S.*)$', rest)
        return _unquote(quoted.group(2))[2:] if quoted else None
    half = (len(rest) - 1) // 2
    old, new = rest[:half], rest[half + 1:]
    if old[2:] == new[2:] and new.startswith(b"b/"):
        return new[2:].decode("utf-8", "surrogateescape")
    return None
