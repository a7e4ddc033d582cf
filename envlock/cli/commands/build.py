"""``envlock build``: turn a lock (+ its code) into a verified, digest-pinned image."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from envlock.cli.commands.audit import (
    AdvisoriesOpt,
    AuditFailOnOpt,
    AuditIgnoreOpt,
    AuditOpt,
    OsvUrlOpt,
    gate_options,
    run_gate,
)
from envlock.cli.commands.lock import AllowFileOpt, JsonOpt

RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", help="Push to HOST[:PORT]/REPO (default: $ENVLOCK_REGISTRY, else the "
    "config's registry; none: local only).")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base-image", help="Base image (pinned to its digest); default: $ENVLOCK_BASE_IMAGE, "
    "else the config's base_images/base_image, else python:<version>-slim from the lock.")]
RegistryUserOpt = Annotated[str | None, typer.Option(
    "--registry-username", help="Registry user, with --registry-password-stdin (default: "
    "the Docker config's credentials and credential helpers).",
    envvar="ENVLOCK_REGISTRY_USERNAME")]
BuilderOpt = Annotated[str, typer.Option(
    "--builder", envvar="ENVLOCK_BUILDER", help="auto: assemble the image on this host and, "
    "when a Docker engine answers, load it there and prove it inside; docker: require the "
    "engine; oci: daemonless, never touch an engine. All three give the same digests.",
    click_type=click.Choice(["auto", "docker", "oci"]))]
PasswordStdinOpt = Annotated[bool, typer.Option(
    "--registry-password-stdin", help="Read the registry password or token from stdin (never "
    "from a flag: it would show in shell history and process lists).")]


def read_credentials(username: str | None, password_stdin: bool) -> tuple[str, str] | None:
    """(user, password) from --registry-username + --registry-password-stdin, else None."""
    from envlock.errors import UsageError

    if bool(username) != password_stdin:
        raise UsageError("--registry-username and --registry-password-stdin go together",
                         "echo \"$TOKEN\" | envlock … --registry-username USER "
                         "--registry-password-stdin")
    if not username:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--registry-password-stdin read an empty password",
                         "pipe the password or token into envlock")
    return username, password


def connect_engine(registry: str | None, username: str | None, password_stdin: bool,
                   builder: str = "docker") -> Any:
    """The engine, logged in to ``registry``'s host when credentials were given."""
    return build_setup(registry, username, password_stdin, builder)[0]


def build_setup(registry: str | None, username: str | None, password_stdin: bool,
                builder: str) -> tuple[Any, dict[str, str] | None]:
    """(the engine or None, as ``--builder`` asks; the registry credentials or None)."""
    from envlock.adapters.engine import registry_of
    from envlock.errors import UsageError
    from envlock.operations.build import engine_for

    credentials = read_credentials(username, password_stdin)
    if credentials and not registry:
        raise UsageError("registry credentials were given but no registry",
                         "pass --registry HOST[:PORT]/REPO")
    engine = engine_for(builder)
    if engine is not None and credentials and registry:
        engine.login(registry_of(registry), *credentials)
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    return engine, auth


def engine_for_run(tracker: Any, run_id: str, username: str | None,
                   password_stdin: bool) -> Any:
    """The engine for replaying a run, logged in to the registry holding the run's image
    when credentials were given."""
    registry = None
    if username:
        registry = tracker.run(run_id).tags.get("envlock.image") or ""
        if "@sha256:" not in registry:
            from envlock.errors import UsageError

            raise UsageError(f"run {run_id} has no image in a registry to log in to",
                             "drop --registry-username; its image is local or not captured")
    return connect_engine(registry, username, password_stdin)


def build_command(
    lock_path: Annotated[Path | None, typer.Argument(
        help="The lockfile to build (default: envlock.lock.yaml).", show_default=False)] = None,
    from_run: Annotated[str | None, typer.Option(
        "--from-run", help="Rebuild the image of this MLflow run from its lockfile artifact "
        "(and its recorded base image) alone.")] = None,
    code: Annotated[Path | None, typer.Option(
        "--code", help="Repository holding the locked commit (default: the locked git root); "
        "outside git, the directory holding the locked files (default: the locked one).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Image tag (default: the run ID, "
                                               "else lock-<lock digest>).")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run ID to label and tag "
                                                  "the image with.")] = None,
    registry: RegistryOpt = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    base_image: BaseOpt = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Build and tag locally only.")
                       ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild the environment layer and "
                                           "re-provision every wheel.")] = False,
    env_only: Annotated[bool, typer.Option(
        "--env-only", help="Build the environment image only, no code layer (for a rebuild "
        "whose code is not at hand).")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Prove the built environment matches the lock: versions, "
        "files and RECORD hashes, checked on the staged tree and, with an engine, inside the "
        "image, before anything is tagged or pushed.")] = True,
    builder: BuilderOpt = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the recipe (an equivalent "
                                          "Dockerfile); touch nothing.")] = False,
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
    from envlock.errors import UsageError
    from envlock.image import render
    from envlock.model import lockfile

    out.begin("build", as_json)
    if from_run and lock_path:
        raise UsageError("give a lockfile or --from-run, not both",
                         "drop LOCK to rebuild the run, or drop --from-run")
    cfg = config.load(code)
    recorded: dict[str, str] = {}  # the run's tags, with --from-run
    created = None
    if from_run:
        from envlock.operations import targets

        lock, run = targets.load_run(from_run)
        recorded = run.tags
        created = run.started  # as capture did: the same code image again
        run_id = run_id or from_run
        tag = tag or f"{from_run}-rebuild"
    else:
        lock = lockfile.load(lock_path or Path("envlock.lock.yaml"))
    run_gate(lock, gate_options(audit, advisories, osv_url, audit_fail_on, audit_ignore),
             f"run {from_run}" if from_run else str(lock_path or "envlock.lock.yaml"),
             "nothing was built or pushed")
    registry = cfg.get("registry", registry)
    base_image = cfg.base_image_for(lock.python["version"], base_image) or \
        recorded.get("envlock.base_image")
    if dry_run:
        if registry_password_stdin:
            raise UsageError("--registry-username/--registry-password-stdin have no use "
                             "with --dry-run, which touches no registry",
                             "drop the credential flags, or drop --dry-run")
        recipe = render.render(lock, render.choose_base(lock, base_image),
                               render.repository_for(lock, registry),
                               render.default_code_tag(lock, run_id, tag), run_id=run_id)
        raise typer.Exit(out.emit({"recipe": render.dockerfile(recipe), **recipe.to_dict()},
                                  render.dockerfile(recipe)))
    from envlock.operations.build import BuildOptions, build
    from envlock.progress import Reporter

    options = BuildOptions(registry=registry, push=not no_push, base_image=base_image,
                           code_dir=code, tag=tag, run_id=run_id, no_cache=no_cache,
                           verify=verify, env_only=env_only,
                           extra_deny=tuple(cfg.get("deny")), created=created,
                           builder=builder, allow_files=tuple(allow_file or ()))
    engine, auth = build_setup(registry, registry_username, registry_password_stdin, builder)
    options = dataclasses.replace(options, auth=auth)
    with Reporter("envlock build") as reporter:
        result = build(lock, options, engine, reporter)
    from envlock.cli.commands.lock import secret_warnings

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
        lines += _against_run(from_run, recorded, result, payload, env_only)
    lines += [f"image {result.image} {where}", result.pinned]
    raise typer.Exit(out.emit(payload, "\n".join(lines)))


def _against_run(run_id: str, tags: dict[str, str], result: Any, payload: dict[str, Any],
                 env_only: bool) -> list[str]:
    """Is the rebuild the very image(s) the run recorded? Lines for people, and
    ``env_image_matches_run`` / ``image_matches_run`` (None: nothing recorded) in ``payload``."""
    verified = bool(result.fidelity and result.fidelity.get("ok"))
    pairs = [("env_image", "environment image", tags.get("envlock.env_image_id"),
              result.env_image_id,
              "its files match the lock, so another Docker engine or envlock version wrote "
              "them differently" if verified else "not verified against the lock (--no-verify)")]
    pin = tags.get("envlock.image") or ""
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
