"""Installed files against their distribution's RECORD hashes (``check --deep``).

A file whose content no longer matches RECORD was edited in place (a hot-fix in
site-packages, a patched library); a missing file was deleted. Both make the
environment differ from what its versions claim. The hashing itself runs inside
the interpreter being checked (``_probe.py --deep``), on the host or in an image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FileProblem:
    package: str
    path: str
    problem: str  # modified | missing | unreadable

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "path": self.path, "problem": self.problem}


@dataclass(frozen=True)
class IntegrityReport:
    packages_checked: int
    files_checked: int
    problems: tuple[FileProblem, ...]
    unverifiable: tuple[str, ...]  # distributions without a RECORD

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "packages_checked": self.packages_checked,
                "files_checked": self.files_checked,
                "problems": [p.to_dict() for p in self.problems],
                "unverifiable": list(self.unverifiable)}


def from_probe(distributions: Iterable[dict[str, Any]]) -> IntegrityReport:
    """The report of a ``--deep`` probe run."""
    from envlock.model.lockfile import normalize

    problems: list[FileProblem] = []
    unverifiable: list[str] = []
    checked = files = 0
    for dist in distributions:
        name = normalize(dist.get("name") or dist["dir"])
        if "problems" not in dist:
            unverifiable.append(name)
            continue
        checked += 1
        files += int(dist.get("files", 0))
        problems.extend(FileProblem(name, p["path"], p["problem"]) for p in dist["problems"])
    problems.sort(key=lambda p: (p.package, p.path))
    return IntegrityReport(packages_checked=checked, files_checked=files,
                           problems=tuple(problems), unverifiable=tuple(sorted(unverifiable)))
