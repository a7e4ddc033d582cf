"""Pure: which files of a project are not code — ``.dockerignore`` rules, then
``.envlockignore`` rules (same syntax), read from the project's root. Used by the git and
directory probes (what is hashed into the lock) and by the code layer (what is packed)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

IGNORE_FILES = (".dockerignore", ".envlockignore")


def ignore_patterns(root: Path) -> list[str]:
    """The rules of ``.dockerignore`` then ``.envlockignore`` in ``root`` (either may be absent)."""
    patterns: list[str] = []
    for name in IGNORE_FILES:
        try:
            lines = (root / name).read_text().splitlines()
        except OSError:
            continue
        patterns += [line.strip() for line in lines
                     if line.strip() and not line.lstrip().startswith("#")]
    return patterns


def ignored(path: str, patterns: list[str]) -> bool:
    """``.dockerignore`` semantics (last match wins, ``!`` re-includes, ``**`` any depth)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        candidates = {pat, pat.replace("**/", "")}
        if any(fnmatch.fnmatchcase(path, c) or path.startswith(c.rstrip("*") + "/")
               and "*" not in c for c in candidates):
            result = not negate
    return result
