"""``envlock audit``: the known vulnerabilities of a lock's packages, from OSV — and the
same check as a gate that ``build``, ``capture`` and ``check`` run before anything is
built, pushed or recorded (``--audit``).

Packages installed from an index, a wheel or sdist, conda or the system are audited by
name and version; packages built from a VCS checkout, a directory or an editable project
are listed as not audited (their version names no published release). Every source is
read (``--advisories`` dumps, then the API); one that cannot be reached is reported, and
when none can, the audit stops with exit 2 naming each one tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import EXIT_DRIFT, EnvlockError, UsageError
from envlock.model import audit as model
from envlock.model.lockfile import Lock


class AuditFailed(EnvlockError):
    """The gate found vulnerabilities at or above ``--fail-on`` (exit 1, as a failed check)."""

    exit_code = EXIT_DRIFT

    def __init__(self, message: str, hint: str | None, report: model.AuditReport) -> None:
        super().__init__(message, hint)
        self.report = report


@dataclass(frozen=True)
class AuditOptions:
    advisories: tuple[Path, ...] = ()
    osv_url: str | None = None
    fail_on: str = "any"
    ignore: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.fail_on not in model.FAIL_ON:
            raise UsageError(f"--fail-on {self.fail_on}: not a severity",
                             f"use one of {', '.join(model.FAIL_ON)}")


def audit(lock: Lock, options: AuditOptions = AuditOptions(), target: str = "<lock>",
          notify: Callable[[str], None] | None = None) -> model.AuditReport:
    """Audit ``lock``'s packages against every source of ``options``."""
    from envlock.adapters.osv import AdvisorySourceError, sources

    audited = tuple(sorted((p.name, p.version) for p in lock.packages
                           if p.source.kind in model.AUDITED_SOURCES))
    skipped = tuple(sorted((p.name, p.version, p.source.kind) for p in lock.packages
                           if p.source.kind not in model.AUDITED_SOURCES))
    matches: dict[tuple[str, str], list[Any]] = {}
    tried: list[model.Source] = []
    for source in sources(options.advisories, options.osv_url):
        try:
            found = source.lookup(audited)
        except AdvisorySourceError as exc:
            tried.append(model.Source(source.describe(), source.kind, error=exc.message))
            if notify:
                notify(f"advisory source unreachable: {exc.message}")
            continue
        tried.append(model.Source(source.describe(), source.kind, records=source.records))
        for package, advisories in found.items():
            known = {a.id for a in matches.get(package, [])}
            matches.setdefault(package, []).extend(a for a in advisories if a.id not in known)
    if not any(s.error is None for s in tried):
        raise AdvisorySourceError(
            "no advisory source is reachable: tried " + "; ".join(
                f"{s.what} ({s.error})" for s in tried),
            "pass --advisories with OSV's PyPI dump (PyPI/all.zip or a directory of its "
            "records), or --osv-url with a reachable OSV API mirror")
    return model.AuditReport(target=target, fail_on=options.fail_on, audited=audited,
                             not_audited=skipped, sources=tuple(tried),
                             ignore=options.ignore,
                             findings=model.findings(matches, options.fail_on, options.ignore))


def gate(lock: Lock, options: AuditOptions, target: str, before: str,
         notify: Callable[[str], None] | None = None) -> model.AuditReport:
    """The audit as a gate: raises AuditFailed (exit 1) naming the failing findings, so that
    the caller stops ``before`` anything happens (e.g. "nothing was built or pushed")."""
    report = audit(lock, options, target, notify)
    if report.failed:
        raise AuditFailed(f"audit failed: {_worst(report.failing)}; {before}", _hint(report),
                          report)
    return report


def _worst(failing: Sequence[model.Finding]) -> str:
    shown = ", ".join(f"{f.package} {f.version} {f.id} ({f.severity or 'unknown severity'})"
                      for f in failing[:5])
    more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
    return f"{len(failing)} known vulnerabilit{'y' if len(failing) == 1 else 'ies'}: " \
           f"{shown}{more}"


def _hint(report: model.AuditReport) -> str:
    from envlock.model.osv import version_key

    best: dict[str, str] = {}
    for finding in report.failing:
        known = best.get(finding.package)
        if finding.upgrade and (known is None or
                                version_key(finding.upgrade) > version_key(known)):
            best[finding.package] = finding.upgrade
    fixes = ", ".join(f"{name}>={version}" for name, version in sorted(best.items()))
    upgrade = f"upgrade ({fixes}) and lock again, " if fixes else ""
    return (f"{upgrade}or accept a finding with --audit-ignore ID; `envlock audit` shows "
            "the full table")
