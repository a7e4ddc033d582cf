"""``envlock export`` and ``envlock import``: a run and its image in one verifiable tar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.options import JsonOpt, PasswordStdinOpt, RegistryUserOpt


def export_command(
    run_id: Annotated[str, typer.Argument(help="The captured MLflow run to export.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Archive to write (default: envlock-RUN_ID.tar).")] = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a captured run and its image to one tar archive.

    The image as an OCI image layout (docker load reads it too), the lockfile, the build
    recipe, the git diff and the run's MLflow metadata, every file listed with its sha256.
    An image pinned in a registry is copied by digest, so its digest stays the same."""
    from envlock.cli import output as out
    from envlock.operations import connect
    from envlock.operations.archive import export
    from envlock.progress import Reporter

    out.begin("export", as_json)
    target = output or Path(f"envlock-{run_id}.tar")
    credentials = connect.read_credentials(registry_username, registry_password_stdin)
    with Reporter("envlock export") as reporter:
        result = export(run_id, target, tracker=connect.open_tracker(), credentials=credentials,
                        reporter=reporter)
    for warning in result.warnings:
        out.warn(warning)
    image = result.image
    how = "copied from the registry" if image.source == "registry" else "saved from the engine"
    human = (f"exported run {run_id} → {result.archive} ({_size(result.size)}, "
             f"{result.files} files)\n"
             f"  sha256    {result.sha256}\n"
             f"  image     {image.reference} ({how})\n"
             f"  manifest  {image.manifest_digest} ({image.layers} layers, "
             f"{_size(image.size)})\n"
             f"  config    {image.config_digest}")
    raise typer.Exit(out.emit(result.to_dict(), human))


def import_command(
    archive: Annotated[Path, typer.Argument(help="An archive written by envlock export.")],
    registry: Annotated[str | None, typer.Option(
        "--registry", help="Push the image to HOST[:PORT]/REPO (same digest) instead of "
        "loading it into the local engine.")] = None,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="Experiment to re-create the run in (default: the original "
        "experiment's name; created if missing).")] = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify an archive, restore its image, and re-create its run in this tracking store.

    Every digest is checked before anything is touched. The image is pushed (--registry)
    or loaded into the engine; the run gets its params, metric histories, tags and envlock/
    artifacts, plus envlock.imported_from. Importing the same run again reuses its run."""
    from envlock.cli import output as out
    from envlock.operations.archive import import_archive
    from envlock.operations.connect import read_credentials
    from envlock.progress import Reporter

    out.begin("import", as_json)
    if not registry and registry_password_stdin:
        from envlock.errors import UsageError

        raise UsageError("--registry-username/--registry-password-stdin are for pushing to "
                         "--registry; without it the image is loaded into the local engine",
                         "add --registry HOST[:PORT]/REPO, or drop the credential flags")
    credentials = read_credentials(registry_username, registry_password_stdin)
    with Reporter("envlock import") as reporter:
        result = import_archive(archive, registry=registry, experiment=experiment,
                                credentials=credentials, reporter=reporter)
    for warning in result.warnings:
        out.warn(warning)
    if result.target == "registry":
        where = (f"pushed {result.blobs_pushed} blobs ({_size(result.bytes_pushed)}), "
                 f"{result.blobs_existing} already there")
    else:
        where = "loaded into the engine"
    verb = "already imported as" if result.reused else "imported as"
    human = (f"run {result.original_run_id} {verb} run {result.run_id} in experiment "
             f"{result.experiment!r} ({result.tracking_uri})\n"
             f"  image     {result.image} ({where})\n"
             f"  verified  {archive} (sha256 {result.archive_sha256})\n"
             f"  replay it with: envlock replay {result.run_id}")
    raise typer.Exit(out.emit(result.to_dict(), human))


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover - unreachable


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import")(import_command)
