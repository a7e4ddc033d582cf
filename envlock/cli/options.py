"""Every option more than one command takes, declared once (pip's ``cli/cmdoptions.py``).

A command composes these as parameter annotations; an option only one command takes is
declared beside that command. Also the audit gate's options turned into a request, and the
gate itself, which ``build``, ``capture`` and ``check`` share. Light imports only: this
module is on every command's start-up path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

if TYPE_CHECKING:
    from envlock.model.audit import AuditReport
    from envlock.operations.audit import AuditOptions

# Output
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")]
MarkdownOpt = Annotated[Path | None, typer.Option(
    "--markdown", help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY).")]

# What is locked
PythonOpt = Annotated[str | None, typer.Option(
    "--python", "-p", help="Interpreter (or venv directory) to snapshot; default: envlock's own. "
    "Nothing is installed into it.")]
CodeMaxSizeOpt = Annotated[str | None, typer.Option(
    "--code-max-size", help="Size cap for packing a project outside git (e.g. 512m, 1g; "
    "default: the config's code_max_size, else 256m).")]
AllowFileOpt = Annotated[list[str] | None, typer.Option(
    "--allow-file", help="Keep this file in the code although its content looks like a "
    "secret (a false positive); a path or pattern relative to the project (repeatable).")]
EnvAllowOpt = Annotated[list[str] | None, typer.Option(
    "--env-allow", help="Extra env var name pattern to record (repeatable, e.g. 'MY_SEED*'; "
    "default: the config's env_allow). Secret-looking names are never recorded.")]

# Images and registries
RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", help="Push to HOST[:PORT]/REPO (default: $ENVLOCK_REGISTRY, else the "
    "config's registry; none: local only).")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base-image", help="Base image (pinned to its digest); default: $ENVLOCK_BASE_IMAGE, "
    "else the config's base_images/base_image, else python:<version>-slim from the lock.")]
BuilderOpt = Annotated[str, typer.Option(
    "--builder", envvar="ENVLOCK_BUILDER", help="auto: assemble the image on this host and, "
    "when a Docker engine answers, load it there and prove it inside; docker: require the "
    "engine; oci: daemonless, never touch an engine. All three give the same digests.",
    click_type=click.Choice(["auto", "docker", "oci"]))]
RegistryUserOpt = Annotated[str | None, typer.Option(
    "--registry-username", help="Registry user, with --registry-password-stdin (default: "
    "the Docker config's credentials and credential helpers).",
    envvar="ENVLOCK_REGISTRY_USERNAME")]
PasswordStdinOpt = Annotated[bool, typer.Option(
    "--registry-password-stdin", help="Read the registry password or token from stdin (never "
    "from a flag: it would show in shell history and process lists).")]

# Vulnerability audits: `audit` itself, and the gate of build, capture and check
LEVELS_HELP = "any, low, medium, high or critical"
AdvisoriesOpt = Annotated[list[Path] | None, typer.Option(
    "--advisories", help="Offline advisories: OSV's PyPI dump (PyPI/all.zip, or a directory "
    "of its <ID>.json records); repeatable. Without it, OSV's API is asked.")]
OsvUrlOpt = Annotated[str | None, typer.Option(
    "--osv-url", help="OSV API to ask (default: https://api.osv.dev when no --advisories; "
    "a mirror speaking the same API).")]
# Any one of the gate's options turns the gate on.
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


RequireSignedOpt = Annotated[bool, typer.Option(
    "--require-signed", help="Refuse (exit 2) unless the image carries a provenance signed "
    "with the verifying key ($ENVLOCK_VERIFY_KEY or verify_key) that names the run's lock "
    "(default: the config's require_signed). With a verifying key set, a bad signature "
    "or another lock is refused even without it.")]


def check_signed(run_id: str, require: bool = False) -> None:
    """Replay's and verify's hook (issue #27): the image's signature and provenance,
    checked before anything runs; a one-line error (exit 2) when they fail."""
    from envlock.cli import output as out
    from envlock.operations.provenance import check_run

    verified, warning = check_run(run_id, require)
    if warning:
        out.warn(warning)
    elif verified is not None:
        out.note(f"image {verified.image} carries a provenance signed by "
                 f"{verified.keyid[:19]}… naming the run's lock")
