"""``envlock build``: turn a lock (+ its code) into a verified, digest-pinned image."""

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
    JsonOpt,
    OsvUrlOpt,
    PasswordStdinOpt,
    RegistryOpt,
    RegistryUserOpt,
    gate_options,
    run_gate,
)
from envlock.model import runrecord

if TYPE_CHECKING:
    from envlock.model.lockfile import Lock
    from envlock.operations.build import BuildResult
    from envlock.operations.targets import BuildSource

LockArg = Annotated[Path | None, typer.Argument(
    help="The lockfile to build (default: envlock.lock.yaml).", show_default=False)]
FromRunOpt = Annotated[str | None, typer.Option(
    "--from-run", help="Rebuild the image of this MLflow run from its lockfile artifact "
    "(and its recorded base image) alone.")]
CodeOpt = Annotated[Path | None, typer.Option(
    "--code", help="Repository holding the locked commit (default: the locked git root); "
    "outside git, the directory holding the locked files (default: the locked one).")]
TagOpt = Annotated[str | None, typer.Option(
    "--tag", help="Image tag (default: the run ID, else lock-<lock digest>).")]
RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", help="Run ID to label and tag the image with.")]
NoPushOpt = Annotated[bool, typer.Option("--no-push", help="Build and tag locally only.")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Rebuild the environment layer and re-provision every wheel.")]
EnvOnlyOpt = Annotated[bool, typer.Option(
    "--env-only", help="Build the environment image only, no code layer (for a rebuild "
    "whose code is not at hand).")]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify/--no-verify", help="Prove the built environment matches the lock: versions, "
    "files and RECORD hashes, checked on the staged tree and, with an engine, inside the "
    "image, before anything is tagged or pushed.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the recipe (an equivalent Dockerfile); touch nothing.")]


def build_command(
    lock_path: LockArg = None,
    from_run: FromRunOpt = None,
    code: CodeOpt = None,
    tag: TagOpt = None,
    run_id: RunIdOpt = None,
    registry: RegistryOpt = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    base_image: BaseOpt = None,
    no_push: NoPushOpt = False,
    no_cache: NoCacheOpt = False,
    env_only: EnvOnlyOpt = False,
    verify: VerifyOpt = True,
    builder: BuilderOpt = "auto",
    dry_run: DryRunOpt = False,
    allow_file: AllowFileOpt = None,
    audit: AuditOpt = False,
    advisories: AdvisoriesOpt = None,
    osv_url: OsvUrlOpt = None,
    audit_fail_on: AuditFailOnOpt = None,
    audit_ignore: AuditIgnoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build, verify, push and pin the image of a lock.

    Base pinned by digest, one environment layer per env_digest (reused), one code layer
    per run, assembled by envlock itself (no Docker daemon needed; --builder); the
    environment is verified against the lock before anything is tagged or pushed, and the
    same lock on the same base gives the same digest on any machine. The environment is
    staged in /dev/shm when it has room ($ENVLOCK_STAGING_DIR chooses), byte-compiled
    beside the installs, and the wheels' own deflate streams are carried into the layer.
    `--from-run RUN_ID --no-cache` rebuilds a run's environment from its lock alone, as
    after its image was garbage-collected, and says whether the result is the very image
    the run recorded (images are reproducible: same lock, base and code, same digest)."""
    from envlock import config
    from envlock.cli import output as out
    from envlock.operations import connect, targets
    from envlock.operations.build import BuildOptions

    out.begin("build", as_json)
    targets.one_source(lock_path, from_run)
    cfg = config.load(code)
    source = targets.for_build(lock_path, from_run, run_id, tag)
    run_gate(source.lock, gate_options(audit, advisories, osv_url, audit_fail_on, audit_ignore),
             source.label, "nothing was built or pushed")
    registry, base_image = source.settings(cfg, registry, base_image)
    if dry_run:
        raise typer.Exit(_dry_run(source, registry, base_image, registry_password_stdin))
    engine, auth = connect.build_setup(registry, registry_username, registry_password_stdin,
                                       builder)
    options = BuildOptions(registry=registry, push=not no_push, base_image=base_image,
                           code_dir=code, tag=source.tag, run_id=source.run_id,
                           no_cache=no_cache, verify=verify, env_only=env_only,
                           extra_deny=tuple(cfg.get("deny")), created=source.created,
                           builder=builder, allow_files=tuple(allow_file or ()), auth=auth)
    raise typer.Exit(_emit(_built(source.lock, options, engine), source, from_run, env_only))


def _built(lock: Any, options: Any, engine: Any) -> Any:
    """The build, its progress on stderr, ending with the one summary line."""
    from envlock.operations.build import build
    from envlock.progress import Reporter

    with Reporter("envlock build") as reporter:
        result = build(lock, options, engine, reporter)
        reporter.step(f"built: {result.summary}")
    return result


def _dry_run(source: BuildSource, registry: str | None, base_image: str | None,
             password_stdin: bool) -> int:
    """Print the recipe (an equivalent Dockerfile), touching nothing."""
    from envlock.cli import output as out
    from envlock.errors import UsageError
    from envlock.image import render

    if password_stdin:
        raise UsageError("--registry-username/--registry-password-stdin have no use "
                         "with --dry-run, which touches no registry",
                         "drop the credential flags, or drop --dry-run")
    lock: Lock = source.lock
    recipe = render.render(lock, render.choose_base(lock, base_image),
                           render.repository_for(lock, registry),
                           render.default_code_tag(lock, source.run_id, source.tag),
                           run_id=source.run_id)
    return out.emit({"recipe": render.dockerfile(recipe), **recipe.to_dict()},
                    render.dockerfile(recipe))


def _emit(result: BuildResult, source: BuildSource, from_run: str | None,
          env_only: bool) -> int:
    """Warnings, then the result: what was built, verified and pushed; with --from-run,
    whether the rebuild is the very image the run recorded."""
    from envlock.cli import output as out
    from envlock.cli.output import secret_warnings

    for warning in secret_warnings({"withheld": result.secrets_withheld}, "the code layer"):
        out.warn(warning)
    where = "pushed and pinned" if result.pushed else "local only (not pushed)"
    lines = [f"environment {result.env_image} "
             f"({'reused from ' + result.env_reused if result.env_reused else 'built'})"]
    if result.fidelity:
        lines.append(f"verified against the lock: {result.fidelity['packages']} packages, "
                     f"{result.fidelity['files_verified']} files match their RECORD hashes")
    payload = result.to_dict()
    if from_run:
        lines += _against_run(from_run, source.recorded, result, payload, env_only)
    lines += [f"image {result.image} {where}", result.pinned]
    return out.emit(payload, "\n".join(lines))


def _against_run(run_id: str, tags: dict[str, str], result: Any, payload: dict[str, Any],
                 env_only: bool) -> list[str]:
    """Is the rebuild the very image(s) the run recorded? Lines for people, and
    ``env_image_matches_run`` / ``image_matches_run`` (None: nothing recorded) in ``payload``."""
    verified = bool(result.fidelity and result.fidelity.get("ok"))
    pairs = [("env_image", "environment image", tags.get(runrecord.ENV_IMAGE_ID),
              result.env_image_id,
              "its files match the lock, so another Docker engine or envlock version wrote "
              "them differently" if verified else "not verified against the lock (--no-verify)")]
    pin = tags.get(runrecord.IMAGE) or ""
    if not env_only:  # a registry pin or a local image id: compare the digests
        pairs.append(("image", "image", pin.rpartition("@")[2] or None,
                      result.pinned.rpartition("@")[2],
                      "a different environment image, code (--code) or Docker engine"))
    lines = []
    for key, what, recorded, rebuilt, why in pairs:
        payload[f"{key}_matches_run"] = recorded == rebuilt if recorded else None
        if not recorded:
            lines.append(f"run {run_id} recorded no {what} digest to compare with")
        elif recorded == rebuilt:
            lines.append(f"{what} identical to the one run {run_id} recorded ({rebuilt[:19]})")
        else:
            lines.append(f"{what} {rebuilt[:19]} differs from the {recorded[:19]} run {run_id} "
                         f"recorded: {why}")
    if not env_only and pin in (result.pinned, result.image_id):  # same repository too
        lines.append(f"the run's own pin resolves again: envlock replay {run_id}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("build")(build_command)
