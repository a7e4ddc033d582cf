"""Pure: the result of ``envlock audit`` — known vulnerabilities of a lock's packages —
and its CI reports (one JUnit case per audited package, a Markdown table of findings).

A finding *fails* the gate when it is not ignored (``--ignore`` names its ID or any
alias) and its severity reaches ``--fail-on`` (``any``: every finding). A finding of
unknown severity fails at every threshold: nothing shows it is below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envlock.model import osv
from envlock.model.report import Case, markdown

FAIL_ON = ("any", *osv.LEVELS)
#: Package sources whose name and version are a release of the package index's project.
AUDITED_SOURCES = ("index", "archive", "conda", "system")


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str | None
    score: float | None
    fixed: tuple[str, ...]
    ignored: bool = False
    fails: bool = False

    @property
    def upgrade(self) -> str | None:
        """The first fixed version above the locked one (None: no fix is known)."""
        current = osv.version_key(self.version)
        return next((v for v in self.fixed if osv.version_key(v) > current), None)

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "id": self.id,
                "aliases": list(self.aliases), "summary": self.summary,
                "severity": self.severity or "unknown", "score": self.score,
                "fixed": list(self.fixed), "ignored": self.ignored, "fails": self.fails}


@dataclass(frozen=True)
class Source:
    """An advisory source that was tried: ``what`` (a path or URL), its kind, and what
    came of it (``records`` read, or the ``error`` that made it unreachable)."""

    what: str
    kind: str  # "offline" | "online"
    records: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.what} ({self.kind}): unreachable: {self.error}"
        count = f", {self.records} records" if self.records is not None else ""
        return f"{self.what} ({self.kind}{count})"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.what, "kind": self.kind, "records": self.records,
                "error": self.error}


@dataclass(frozen=True)
class AuditReport:
    target: str
    fail_on: str
    audited: tuple[tuple[str, str], ...]  # (name, version)
    not_audited: tuple[tuple[str, str, str], ...]  # (name, version, source kind)
    findings: tuple[Finding, ...]
    sources: tuple[Source, ...] = ()
    ignore: tuple[str, ...] = field(default=())

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.fails]

    @property
    def failed(self) -> bool:
        return bool(self.failing)

    def summary(self) -> str:
        """``3 known vulnerabilities in 2 packages (1 high, 2 medium); 1 fails (threshold:
        high or worse)`` — or that none are known."""
        shown = [f for f in self.findings if not f.ignored]
        if not shown:
            ignored = len(self.findings) - len(shown)
            return (f"no known vulnerabilities in {len(self.audited)} packages"
                    + (f" ({ignored} ignored)" if ignored else ""))
        counts: dict[str, int] = {}
        for finding in shown:
            level = finding.severity or "unknown"
            counts[level] = counts.get(level, 0) + 1
        levels = ", ".join(f"{counts[lvl]} {lvl}" for lvl in (*reversed(osv.LEVELS), "unknown")
                           if lvl in counts)
        packages = len({f.package for f in shown})
        ignored = len(self.findings) - len(shown)
        return (f"{len(shown)} known vulnerabilit{'y' if len(shown) == 1 else 'ies'} in "
                f"{packages} package{'s' * (packages != 1)} ({levels}); "
                f"{len(self.failing)} fail{'s' * (len(self.failing) == 1)} (threshold: "
                f"{'any severity' if self.fail_on == 'any' else self.fail_on + ' or worse'})"
                + (f"; {ignored} ignored" if ignored else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "fail_on": self.fail_on, "failed": self.failed,
                "summary": self.summary(), "ignore": list(self.ignore),
                "sources": [s.to_dict() for s in self.sources],
                "packages_audited": len(self.audited),
                "not_audited": [{"package": n, "version": v, "source": k}
                                for n, v, k in self.not_audited],
                "findings": [f.to_dict() for f in self.findings]}


def fails(level: str | None, fail_on: str) -> bool:
    """Does a finding of ``level`` reach the ``fail_on`` threshold?"""
    return fail_on == "any" or osv.rank(level) >= osv.rank(fail_on)


def findings(matches: Mapping[tuple[str, str], Iterable[osv.Advisory]], fail_on: str = "any",
             ignore: Iterable[str] = ()) -> tuple[Finding, ...]:
    """One finding per (package, vulnerability): the records matched for each locked
    (name, version), merged by alias, sorted by package then severity (worst first)."""
    ignored = {i.upper() for i in ignore}
    out = []
    for (name, version), advisories in matches.items():
        for group in osv.merge(advisories):
            out.append(_finding(name, version, group, fail_on, ignored))
    return tuple(sorted(out, key=lambda f: (f.package, -osv.rank(f.severity), f.id)))


def _finding(name: str, version: str, group: Sequence[osv.Advisory], fail_on: str,
             ignored: set[str]) -> Finding:
    ids = {a.id for a in group}
    main = osv.primary(ids)
    aliases = sorted(({alias for a in group for alias in a.aliases} | ids) - {main})
    known = [a.severity for a in group if a.severity]
    level = max(known, key=osv.rank) if known else None
    scores = [a.score for a in group if a.score is not None]
    first = next(a for a in group if a.id == main)
    summary = first.summary or next((a.summary for a in group if a.summary), "")
    fixed = sorted({v for a in group for v in a.fixed(name)}, key=osv.version_key)
    is_ignored = bool({i.upper() for i in (main, *aliases)} & ignored)
    return Finding(package=name, version=version, id=main, aliases=tuple(aliases),
                   summary=summary, severity=level, score=max(scores) if scores else None,
                   fixed=tuple(fixed), ignored=is_ignored,
                   fails=not is_ignored and fails(level, fail_on))


# ----------------------------------------------------------------------------- reports
def cases(report: AuditReport) -> list[Case]:
    """One case per audited package: it fails when one of its findings does."""
    by_package: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_package.setdefault(finding.package, []).append(finding)
    out = []
    for name, version in report.audited:
        found = by_package.get(name, [])
        detail = "; ".join(_describe(f) for f in found) or "no known vulnerabilities"
        out.append(Case(f"package {name} {version}", not any(f.fails for f in found), detail))
    return out


def _describe(finding: Finding) -> str:
    fixed = f", fixed in {', '.join(finding.fixed)}" if finding.fixed else ", no fix yet"
    note = " (ignored)" if finding.ignored else "" if finding.fails else " (below the threshold)"
    return f"{finding.id} {finding.severity or 'unknown severity'}{fixed}{note}"


def report_markdown(report: AuditReport) -> str:
    facts = {"target": report.target, "fail on": report.fail_on,
             "sources": "; ".join(s.describe() for s in report.sources),
             "packages audited": len(report.audited)}
    if report.not_audited:
        facts["not audited (not from an index)"] = ", ".join(
            f"{n} {v} ({k})" for n, v, k in report.not_audited)
    rows = [(f.package, f.version, f.id, f.severity or "unknown", ", ".join(f.fixed) or "-",
             ", ".join(f.aliases) or "-",
             "ignored" if f.ignored else "**fails**" if f.fails else "below threshold")
            for f in report.findings]
    return markdown("envlock audit", not report.failed, report.summary(), facts,
                    ("package", "version", "vulnerability", "severity", "fixed in", "aliases",
                     ""), rows)
