"""Pure: OSV advisories (https://ossf.github.io/osv-schema/) for PyPI packages.

Which versions a record affects (``affected[].ranges`` of type ECOSYSTEM — events
``introduced``/``fixed``/``last_affected``, evaluated as the schema says, with PEP 440
ordering from ``packaging`` — and the enumerated ``affected[].versions``), how severe it
is (GitHub's ``database_specific.severity``, else the highest CVSS vector, scored by the
``cvss`` library), and one finding per vulnerability: records that alias each other (a
GHSA and its PYSEC twin, both in OSV's PyPI data) are merged into one.

A locked version with a local tag (``2.3.1+cu121``) is that release: ranges compare it
with PEP 440 rules (``2.3.1+cu121`` is at or after ``2.3.1``), the version list by its
public part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from packaging.version import InvalidVersion, Version

#: Severity levels, lowest first; ``None`` is unknown.
LEVELS = ("low", "medium", "high", "critical")
#: ``database_specific.severity`` as GitHub (and others) write it.
_DATABASE_LEVELS = {"LOW": "low", "MODERATE": "medium", "MEDIUM": "medium", "HIGH": "high",
                    "CRITICAL": "critical"}
_CVSS_LEVELS = {"none": "low", "low": "low", "medium": "medium", "high": "high",
                "critical": "critical"}
ECOSYSTEM = "PyPI"


def normalize(name: str) -> str:
    """PEP 503: the name OSV's PyPI records and envlock's lock agree on."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Affected:
    """One ``affected`` entry of a record for a PyPI package."""

    name: str  # normalized
    ranges: tuple[tuple[tuple[str, str], ...], ...]  # each range: its (event, version) pairs
    versions: frozenset[str]  # public versions, as written

    def fixed(self) -> list[str]:
        return [version for events in self.ranges for kind, version in events
                if kind == "fixed"]


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    affected: tuple[Affected, ...]
    withdrawn: bool = False
    #: What the record says of its severity (``database_specific.severity``, ``severity``),
    #: scored only when asked: most records read are never matched.
    ratings: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def _rated(self) -> tuple[str | None, float | None]:
        return severity(self.ratings)

    @property
    def severity(self) -> str | None:
        """One of LEVELS; None when the record says nothing usable."""
        return self._rated[0]

    @property
    def score(self) -> float | None:
        """The highest CVSS base score, when a vector is given."""
        return self._rated[1]

    @property
    def names(self) -> set[str]:
        return {a.name for a in self.affected}

    def affects(self, name: str, version: str) -> bool:
        name = normalize(name)
        return not self.withdrawn and any(
            entry.name == name and affects(entry, version) for entry in self.affected)

    def fixed(self, name: str) -> list[str]:
        name = normalize(name)
        return [v for entry in self.affected if entry.name == name for v in entry.fixed()]


def parse(record: Mapping[str, Any]) -> Advisory:
    """An OSV record (a parsed ``<ID>.json``) -> its PyPI-relevant facts."""
    affected = tuple(_affected(entry) for entry in record.get("affected") or ()
                     if (entry.get("package") or {}).get("ecosystem") == ECOSYSTEM
                     and (entry.get("package") or {}).get("name"))
    summary = str(record.get("summary") or record.get("details") or "").strip()
    ratings = {k: record[k] for k in ("database_specific", "severity") if record.get(k)}
    return Advisory(id=str(record["id"]), aliases=tuple(str(a) for a in record.get("aliases")
                                                        or ()),
                    summary=summary.splitlines()[0] if summary else "", affected=affected,
                    withdrawn=bool(record.get("withdrawn")), ratings=ratings)


def _affected(entry: Mapping[str, Any]) -> Affected:
    ranges = tuple(
        tuple((kind, str(value)) for event in r.get("events") or ()
              for kind, value in event.items())
        for r in entry.get("ranges") or () if r.get("type") in ("ECOSYSTEM", "SEMVER"))
    return Affected(name=normalize(entry["package"]["name"]), ranges=ranges,
                    versions=frozenset(str(v) for v in entry.get("versions") or ()))


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


_ZERO = Version("0")


def affects(entry: Affected, version: str) -> bool:
    """Is ``version`` in ``entry``'s enumerated versions or any of its ranges?"""
    parsed = _version(version)
    public = parsed.public if parsed else version
    if version in entry.versions or public in entry.versions:
        return True
    if parsed is None:
        return False
    if any(_version(v) == Version(public) for v in entry.versions if _version(v)):
        return True
    return any(_in_range(parsed, events) for events in entry.ranges)


def _in_range(version: Version, events: Iterable[tuple[str, str]]) -> bool:
    """The schema's evaluation: walk the events in version order ("0" first); an
    ``introduced`` at or below the version opens the range, a ``fixed`` at or below it, or
    a ``last_affected`` below it, closes it. ``limit`` (for git) is ignored."""
    ordered = []
    for kind, text in events:
        bound = _ZERO if kind == "introduced" and text == "0" else _version(text)
        if bound is not None and kind in ("introduced", "fixed", "last_affected"):
            ordered.append((bound, kind))
    vulnerable = False
    for bound, kind in sorted(ordered, key=lambda e: e[0]):
        if kind == "introduced" and version >= bound:
            vulnerable = True
        elif (kind == "fixed" and version >= bound) or \
                (kind == "last_affected" and version > bound):
            vulnerable = False
    return vulnerable


def severity(record: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """(level, highest CVSS base score): GitHub's ``database_specific.severity`` when
    given, else the level of the highest-scoring CVSS vector of ``severity``."""
    scored = [s for s in (_cvss(item) for item in record.get("severity") or ()) if s]
    best = max(scored, default=None)
    database = _DATABASE_LEVELS.get(str((record.get("database_specific") or {})
                                        .get("severity") or "").upper())
    if database:
        return database, best[0] if best else None
    return (best[1], best[0]) if best else (None, None)


def _cvss(item: Mapping[str, Any]) -> tuple[float, str] | None:
    """(base score, level) of one ``severity`` entry, None for a type or vector that the
    ``cvss`` library does not read."""
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    kind, vector = item.get("type"), str(item.get("score") or "")
    try:
        if kind == "CVSS_V4":
            v4 = CVSS4(vector)
            return float(v4.base_score), _CVSS_LEVELS[str(v4.severity).lower()]
        if kind == "CVSS_V3":
            v3 = CVSS3(vector)
            return float(v3.base_score), _CVSS_LEVELS[str(v3.severities()[0]).lower()]
        if kind == "CVSS_V2":
            v2 = CVSS2(vector)
            return float(v2.base_score), _CVSS_LEVELS[str(v2.severities()[0]).lower()]
    except (CVSSError, KeyError, ValueError, TypeError):
        return None
    return None


def rank(level: str | None) -> int:
    """Order of a level; unknown sorts above critical (it cannot be shown to be lower)."""
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def primary(ids: Iterable[str]) -> str:
    """The ID a merged vulnerability is shown under: GitHub's, else PyPI's, else any."""
    ordered = sorted(set(ids))
    for prefix in ("GHSA-", "PYSEC-"):
        for candidate in ordered:
            if candidate.startswith(prefix):
                return candidate
    return ordered[0]


def merge(advisories: Iterable[Advisory]) -> list[list[Advisory]]:
    """Group records that name each other (by ID or a shared alias), in a stable order."""
    groups: list[tuple[set[str], list[Advisory]]] = []
    for advisory in sorted(advisories, key=lambda a: a.id):
        keys = {advisory.id, *advisory.aliases}
        touching = [g for g in groups if g[0] & keys]
        merged_keys, merged = set(keys), [advisory]
        for group in touching:
            merged_keys |= group[0]
            merged = group[1] + merged
            groups.remove(group)
        groups.append((merged_keys, merged))
    return sorted((sorted(g[1], key=lambda a: a.id) for g in groups),
                  key=lambda g: primary(a.id for a in g))


def version_key(text: str) -> tuple[int, Any]:
    parsed = _version(text)
    return (0, parsed) if parsed is not None else (1, text)
