"""``envlock capture``: lock + build + push + record lineage on an MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from envlock.cli.options import (
    AdvisoriesOpt,
    AllowFileOpt,
    AuditFailOnOpt,
    AuditIgnoreOpt,
    AuditOpt,
    BaseOpt,
    BuilderOpt,
    CodeMaxSizeOpt,
    EnvAllowOpt,
    JsonOpt,
    OsvUrlOpt,
    PasswordStdinOpt,
    PythonOpt,
    RegistryOpt,
    RegistryUserOpt,
    gate_options,
    run_gate,
)

if TYPE_CHECKING:
    from envlock.operations.capture import CaptureResult

RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", help="MLflow run (default: $MLFLOW_RUN_ID, else the latest run of the "
    "active experiment).")]
CommandOpt = Annotated[str | None, typer.Option(
    "--command", "-c", help="The command that ran the experiment (the image's default "
    "command; `uv run …` runs there without uv, in the image's environment).")]
ProjectOpt = Annotated[Path, typer.Option(
    "--project", help="The experiment's directory (a git repository, or any directory: "
    "then its files are packed by content).")]
NoBuildOpt = Annotated[bool, typer.Option("--no-build", help="Record the lock only.")]
InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", help="A file or directory the run read (data, weights; repeatable; besides "
    "[tool.envlock] inputs): pinned by sha256, copied to the registry up to "
    "inputs_copy_max (1g), else referenced. A path in a Hugging Face hub snapshot pins "
    "that snapshot; s3://BUCKET/KEY is referenced by its ETag and VersionId.")]
NoPushOpt = Annotated[bool, typer.Option("--no-push", help="Build locally, do not push.")]


def capture_command(
    run_id: RunIdOpt = None,
    python: PythonOpt = None,
    command: CommandOpt = None,
    project: ProjectOpt = Path("."),
    registry: RegistryOpt = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    base_image: BaseOpt = None,
    no_build: NoBuildOpt = False,
    no_push: NoPushOpt = False,
    env_allow: EnvAllowOpt = None,
    code_max_size: CodeMaxSizeOpt = None,
    builder: BuilderOpt = "auto",
    allow_file: AllowFileOpt = None,
    input: InputOpt = None,
    audit: AuditOpt = False,
    advisories: AdvisoriesOpt = None,
    osv_url: OsvUrlOpt = None,
    audit_fail_on: AuditFailOnOpt = None,
    audit_ignore: AuditIgnoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lock, build and push the environment of an MLflow run; record it on the run.

    Tags envlock.* (envlock.image last) and artifacts envlock/ (lockfile, recipe, diff)."""
    from envlock.cli import output as out
    from envlock.operations.capture import CaptureRequest, capture
    from envlock.progress import Reporter

    out.begin("capture", as_json)
    engine, auth = _connect(not no_build, project, registry, registry_username,
                            registry_password_stdin, builder)
    audit_options = gate_options(audit, advisories, osv_url, audit_fail_on, audit_ignore)
    request = CaptureRequest(run_id, python=python, command=command, project=project,
                             registry=registry, base_image=base_image, build=not no_build,
                             push=not no_push, env_allow=env_allow or (),
                             code_max_size=code_max_size, builder=builder, auth=auth,
                             allow_files=tuple(allow_file or ()),
                             inputs=tuple(input or ()))
    with Reporter("envlock capture") as reporter:
        result = capture(request, engine=engine, reporter=reporter, lean_mlflow=True,
                         audit=lambda lock: run_gate(
                             lock, audit_options, "the captured environment",
                             "nothing was built, pushed or recorded"))
    for warning in _warnings(result):
        out.warn(warning)
    human = (f"captured run {result.run_id} ({result.picked})\n"
             f"lockfile {result.lockfile}\nenv_digest {result.env_digest}\n"
             f"{'image ' + result.image if result.image else 'no image (--no-build)'}"
             f"{_inputs_table(result)}")
    raise typer.Exit(out.emit(result.to_dict(), human))


def _connect(build: bool, project: Path, registry: str | None, username: str | None,
             password_stdin: bool, builder: str) -> tuple[Any, dict[str, str] | None]:
    """(engine, auth) when credentials were given; else (None, None): capture() connects
    itself, after the lock is safely written."""
    # The password flag, not the user: ENVLOCK_REGISTRY_USERNAME may be set for a whole job.
    if not build and password_stdin:
        from envlock.errors import UsageError

        raise UsageError("--registry-username/--registry-password-stdin are for pushing the "
                         "image, and --no-build pushes nothing",
                         "drop the credential flags, or drop --no-build")
    if not build or not (username or password_stdin):
        return None, None
    from envlock import config
    from envlock.operations.connect import build_setup

    return build_setup(config.load(project).get("registry", registry), username,
                       password_stdin, builder)


def _inputs_table(result: CaptureResult) -> str:
    from envlock.model.inputs import human_size

    pinned = (result.inputs or {}).get("inputs") or []
    if not pinned:
        return ""
    rows = [f"  {i['carry']:<9} {human_size(i['size']):>10}  {i['path']}" for i in pinned]
    pushed = (result.inputs or {}).get("pushed_bytes", 0)
    return (f"\ninputs ({len(pinned)}; {human_size(pushed)} pushed):\n" + "\n".join(rows))


def _warnings(result: CaptureResult) -> list[str]:
    from envlock.cli.output import secret_warnings

    warnings = [*result.warnings, *secret_warnings(result.secret_scan, "the lock")]
    if result.built:
        warnings += secret_warnings({"withheld": result.built.get("secrets_withheld")},
                                    "the code layer")
    return warnings


def register(app: typer.Typer) -> None:
    app.command("capture")(capture_command)
