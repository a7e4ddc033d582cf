"""``envlock check``: the live environment against a lock; drift exits 1."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from envlock.cli.options import (
    AdvisoriesOpt,
    AuditFailOnOpt,
    AuditIgnoreOpt,
    AuditOpt,
    EnvAllowOpt,
    JsonOpt,
    MarkdownOpt,
    OsvUrlOpt,
    PythonOpt,
    gate_options,
)

if TYPE_CHECKING:
    from envlock.model.audit import AuditReport
    from envlock.model.lockfile import Lock
    from envlock.operations.audit import AuditOptions
    from envlock.operations.check import CheckResult


def check_command(
    lock_path: Annotated[Path, typer.Option("--lock", "-l", help="Lockfile to check against.")
                         ] = Path("envlock.lock.yaml"),
    python: PythonOpt = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also verify every installed file against its RECORD hash.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Fail on any difference (GPU, OS, git, knobs), not only packages "
        "and Python.")] = False,
    project: Annotated[Path | None, typer.Option(
        "--project", help="Directory whose code (git state, or files outside git) is "
        "compared; default: the current directory when the lock recorded code.")] = None,
    env_allow: EnvAllowOpt = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write a JUnit XML report (one case per check).")] = None,
    markdown: MarkdownOpt = None,
    audit: AuditOpt = False,
    advisories: AdvisoriesOpt = None,
    osv_url: OsvUrlOpt = None,
    audit_fail_on: AuditFailOnOpt = None,
    audit_ignore: AuditIgnoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the live environment against a lock; exit 1 on drift.

    For CI: --junit and --markdown write reports; the summary also goes to
    $GITHUB_STEP_SUMMARY when that is set. With --audit, the locked packages are also
    audited for known vulnerabilities (one more case per package; findings exit 1)."""
    from envlock import config
    from envlock.cli import output as out
    from envlock.errors import EXIT_DRIFT, EXIT_OK
    from envlock.model import lockfile
    from envlock.operations.check import check

    out.begin("check", as_json)
    lock = lockfile.load(lock_path)
    if project is None and (lock.git is not None or lock.code is not None):
        project = Path(".")
    cfg = config.load(project)
    audited = _audit(lock, str(lock_path), gate_options(audit, advisories, osv_url,
                                                         audit_fail_on, audit_ignore))
    result = check(lock, lock_path, python=python, deep=deep, strict=strict, project=project,
                   env_allow=cfg.get("env_allow", env_allow), code_rules=cfg.code_rules())
    payload, human = _report(result, audited, junit, markdown)
    failed = result.drifted or (audited is not None and audited.failed)
    raise typer.Exit(out.emit(payload, human, EXIT_DRIFT if failed else EXIT_OK))


def _report(result: CheckResult, audited: AuditReport | None, junit: Path | None,
            markdown: Path | None) -> tuple[dict[str, Any], str]:
    """Write the --junit/--markdown reports (the audit's cases beside the check's); the
    payload and the text for people."""
    from envlock.cli.render import audit_text, check_text
    from envlock.model import report

    cases = report.check_cases(result)
    summary = report.check_markdown(result, cases)
    payload, human = result.to_dict(), check_text(result)
    if audited is not None:
        from envlock.model import audit as audit_model

        cases += audit_model.cases(audited)
        summary += "\n" + audit_model.report_markdown(audited)
        payload["audit"], human = audited.to_dict(), human + "\n" + audit_text(audited)
    report.write(junit, markdown, "envlock.check", cases, summary)
    return payload, human


def _audit(lock: Lock, target: str, options: AuditOptions | None) -> AuditReport | None:
    """The audit of ``--audit``, run first: an unreachable source stops the check (exit 2)
    before the environment is probed; findings fail it at the end, beside any drift."""
    if options is None:
        return None
    from envlock.cli import output as out
    from envlock.operations.audit import audit

    return audit(lock, options, target, notify=out.warn)


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
