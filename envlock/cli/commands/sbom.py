"""``envlock sbom``: a CycloneDX or SPDX SBOM of a lock or a captured run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

from envlock.cli.options import JsonOpt, PasswordStdinOpt, RegistryUserOpt

FORMATS = ("cyclonedx-json", "spdx-json")  # envlock.model.sbomdoc.FORMATS, kept light here


def sbom_command(
    target: Annotated[str, typer.Argument(help="Lockfile, or a captured MLflow run ID.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the document to FILE (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="cyclonedx-json (CycloneDX 1.6) or spdx-json (SPDX 2.3).",
        click_type=click.Choice(FORMATS))] = "cyclonedx-json",
    base_image: Annotated[str | None, typer.Option(
        "--base-image", help="The base image, NAME@sha256:…, whose OS packages are read from "
        "its registry (default: a run's recorded base; for a lockfile the config's "
        "base_image).")] = None,
    image: Annotated[str | None, typer.Option(
        "--image", help="The image the SBOM describes, HOST/REPO@sha256:… (default: a run's "
        "envlock.image).")] = None,
    registry_username: RegistryUserOpt = None,
    registry_password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the SBOM of a lock or a captured run: every Python package with its purl,
    source and hashes, the frameworks and CUDA libraries, the interpreter, the base image
    by digest and its OS packages (read from its registry, no container), the image.

    Byte-stable: the same inputs give the same bytes (the time is the run's start, else
    SOURCE_DATE_EPOCH, else 1980-01-01)."""
    import sys

    from envlock.cli import output as out
    from envlock.operations.connect import registry_auth
    from envlock.operations.sbom import for_target

    out.begin("sbom", as_json)
    auth = registry_auth(registry_username, registry_password_stdin)
    result = for_target(target, fmt, image=image, base=base_image, auth=auth)
    for warning in result.warnings:
        out.warn(warning)
    if output is not None:
        _write(output, result.document)
        result.output = str(output)
    elif not as_json:
        sys.stdout.buffer.write(result.document)
        raise typer.Exit(0)
    os_part = f", {result.os_packages} OS packages of {result.base}" \
        if result.os_packages is not None else ""
    human = (f"wrote {output} ({fmt}: {result.python_packages} Python packages{os_part}"
             f"{', image ' + result.image if result.image else ''})")
    raise typer.Exit(out.emit(result.to_dict(include_document=output is None), human))


def _write(path: Path, data: bytes) -> None:
    from envlock.model.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, 0o644) as handle:
        handle.write(data)


def register(app: typer.Typer) -> None:
    app.command("sbom")(sbom_command)
