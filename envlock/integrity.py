"""Verify installed files against their distribution's RECORD hashes (``check --deep``).

A file whose content no longer matches RECORD was edited in place (a hot-fix in
site-packages, a patched library); a missing file was deleted. Both make the
environment differ from what its versions claim.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from envlock.lockfile import Package


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
    unverifiable: tuple[str, ...]  # packages without a RECORD

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "packages_checked": self.packages_checked,
                "files_checked": self.files_checked,
                "problems": [p.to_dict() for p in self.problems],
                "unverifiable": list(self.unverifiable)}


def record_entries(location: str, dist_dir: str) -> list[tuple[str, str, str]] | None:
    """(absolute path, algorithm, expected urlsafe-b64 digest) for each hashed RECORD row."""
    record = os.path.join(location, dist_dir, "RECORD")
    try:
        with open(record, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError:
        return None
    out = []
    for row in rows:
        if len(row) < 2 or not row[1] or "=" not in row[1]:
            continue
        algo, _, expected = row[1].partition("=")
        out.append((os.path.normpath(os.path.join(location, row[0])), algo, expected))
    return out


def _check_file(package: str, path: str, algo: str, expected: str) -> FileProblem | None:
    try:
        digest = hashlib.new(algo)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return FileProblem(package, path, "missing")
    except (OSError, ValueError):
        return FileProblem(package, path, "unreadable")
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    return None if actual == expected else FileProblem(package, path, "modified")


def verify_packages(packages: Iterable[Package], workers: int = 4) -> IntegrityReport:
    jobs: list[tuple[str, str, str, str]] = []
    unverifiable: list[str] = []
    checked = 0
    for pkg in packages:
        if not pkg.location or not pkg.dist_dir or not pkg.dist_dir.endswith(".dist-info"):
            unverifiable.append(pkg.name)
            continue
        entries = record_entries(pkg.location, pkg.dist_dir)
        if entries is None:
            unverifiable.append(pkg.name)
            continue
        checked += 1
        jobs.extend((pkg.name, path, algo, expected) for path, algo, expected in entries)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda job: _check_file(*job), jobs))
    problems = sorted((r for r in results if r), key=lambda p: (p.package, p.path))
    return IntegrityReport(packages_checked=checked, files_checked=len(jobs),
                           problems=tuple(problems), unverifiable=tuple(sorted(unverifiable)))
