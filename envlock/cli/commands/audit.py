"""``envlock audit``: known vulnerabilities of a lock's packages (OSV); findings exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.options import LEVELS_HELP, AdvisoriesOpt, JsonOpt, MarkdownOpt, OsvUrlOpt


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
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Known vulnerabilities of the locked packages, from OSV; exit 1 on findings.

    Online through OSV's API, or offline from OSV's PyPI dump (--advisories). Exit 0 when
    nothing reaches --fail-on, 1 when something does, 2 when no advisory source can be
    reached (each one tried is named)."""
    from envlock.cli import output as out
    from envlock.cli.render import audit_text
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


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_command)
