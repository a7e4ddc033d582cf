"""``envlock audit``: known vulnerabilities of a lock's packages (OSV); findings exit 1.

Also the options of the audit gate that ``build``, ``capture`` and ``check`` take."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from envlock.cli.commands.lock import JsonOpt

if TYPE_CHECKING:
    from envlock.model.audit import AuditReport
    from envlock.operations.audit import AuditOptions

AdvisoriesOpt = Annotated[list[Path] | None, typer.Option(
    "--advisories", help="Offline advisories: OSV's PyPI dump (PyPI/all.zip, or a directory "
    "of its <ID>.json records); repeatable. Without it, OSV's API is asked.")]
OsvUrlOpt = Annotated[str | None, typer.Option(
    "--osv-url", help="OSV API to ask (default: https://api.osv.dev when no --advisories; "
    "a mirror speaking the same API).")]
LEVELS_HELP = "any, low, medium, high or critical"
# The gate's options on build, capture and check: any one of them turns the gate on.
AuditOpt = Annotated[bool, typer.Option(
    "--audit", help="Audit the locked packages for known vulnerabilities (OSV) first, and "
    "stop on findings before anything is built, pushed or recorded.")]
AuditFailOnOpt = Annotated[str | None, typer.Option(
    "--audit-fail-on", help=f"Severity at which the audit gate fails: {LEVELS_HELP} "
    "(default any; implies --audit).")]
AuditIgnoreOpt = Annotated[list[str] | None, typer.Option(
    "--audit-ignore", help="Vulnerability ID or alias the audit gate accepts (repeatable; "
    "implies --audit).")]


def gate_options(audit: bool, advisories: list[Path] | None, osv_url: str | None,
                 fail_on: str | None, ignore: list[str] | None) -> AuditOptions | None:
    """The gate's options, or None when no audit option was given."""
    if not (audit or advisories or osv_url or fail_on or ignore):
        return None
    from envlock.operations.audit import AuditOptions

    return AuditOptions(advisories=tuple(advisories or ()), osv_url=osv_url,
                        fail_on=(fail_on or "any").lower(), ignore=tuple(ignore or ()))


def run_gate(lock: Any, options: AuditOptions | None, target: str, before: str
             ) -> AuditReport | None:
    """Run the audit gate when asked: a note with its summary, or AuditFailed (exit 1)."""
    if options is None:
        return None
    from envlock.cli import output as out
    from envlock.operations.audit import gate

    report = gate(lock, options, target, before, notify=out.warn)
    out.note(f"audit: {report.summary()}")
    return report


def audit_command(
    target: Annotated[str | None, typer.Argument(
        help="Lockfile or captured MLflow run ID (default: envlock.lock.yaml).",
        show_default=False)] = None,
    fail_on: Annotated[str, typer.Option(
        "--fail-on", help=f"Lowest severity that fails: {LEVELS_HELP}. A finding of unknown "
        "severity fails at every level.")] = "any",
    ignore: Annotated[list[str] | None, typer.Option(
        "--ignore", help="Vulnerability ID or alias to accept (repeatable).")] = None,
    advisories: AdvisoriesOpt = None,
    osv_url: OsvUrlOpt = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write a JUnit XML report (one case per audited package).")] = None,
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Known vulnerabilities of the locked packages, from OSV; exit 1 on findings.

    Online through OSV's API, or offline from OSV's PyPI dump (--advisories). Exit 0 when
    nothing reaches --fail-on, 1 when something does, 2 when no advisory source can be
    reached (each one tried is named)."""
    from envlock.cli import output as out
    from envlock.errors import EXIT_DRIFT, EXIT_OK
    from envlock.model import audit as model
    from envlock.model import report as reports
    from envlock.operations import targets
    from envlock.operations.audit import AuditOptions, audit

    out.begin("audit", as_json)
    where = target or "envlock.lock.yaml"
    lock = targets.load(where)
    options = AuditOptions(advisories=tuple(advisories or ()), osv_url=osv_url,
                           fail_on=fail_on.lower(), ignore=tuple(ignore or ()))
    result = audit(lock, options, where, notify=out.warn)
    reports.write(junit, markdown, "envlock.audit", model.cases(result),
                  model.report_markdown(result))
    code = EXIT_DRIFT if result.failed else EXIT_OK
    raise typer.Exit(out.emit(result.to_dict(), audit_text(result), code))


def audit_text(result: AuditReport) -> str:
    from envlock.cli.output import table

    lines = [f"audited {len(result.audited)} packages of {result.target} against "
             + "; ".join(s.describe() for s in result.sources)]
    shown = [f for f in result.findings]
    if shown:
        rows = [("PACKAGE", "VERSION", "VULNERABILITY", "SEVERITY", "FIXED IN", "ALIASES", "")]
        rows += [(f.package, f.version, f.id, f.severity or "unknown",
                  ", ".join(f.fixed) or "-", ", ".join(f.aliases) or "-",
                  "ignored" if f.ignored else "FAILS" if f.fails else "below threshold")
                 for f in shown]
        lines.append(table(rows))
    lines.append(result.summary())
    if result.not_audited:
        lines.append("not audited (not a published release): " + ", ".join(
            f"{n} {v} ({k})" for n, v, k in result.not_audited))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_command)
