"""``envlock build``: turn a lock (+ its code) into a verified, digest-pinned image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.commands.lock import JsonOpt

RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", help="Push to HOST[:PORT]/REPO (default: $ENVLOCK_REGISTRY; none: local only).",
    envvar="ENVLOCK_REGISTRY")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base-image", help="Base image (pinned to its digest); default: python:<version>-slim "
    "from the lock.", envvar="ENVLOCK_BASE_IMAGE")]


def build_command(
    lock_path: Annotated[Path, typer.Argument(help="The lockfile to build.")] = Path(
        "envlock.lock.yaml"),
    code: Annotated[Path | None, typer.Option(
        "--code", help="Repository holding the locked commit (default: the locked git root).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Image tag (default: the run ID, "
                                               "else lock-<lock digest>).")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run ID to label and tag "
                                                  "the image with.")] = None,
    registry: RegistryOpt = None,
    base_image: BaseOpt = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Build and tag locally only.")
                       ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild the environment layer and "
                                           "re-provision every wheel.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the recipe (an equivalent "
                                          "Dockerfile); touch nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build, verify, push and pin the image of a lock.

    Base pinned by digest, one environment layer per env_digest (reused), one code layer
    per run; the environment is verified against the lock before anything is tagged."""
    from envlock import lockfile, render
    from envlock.cli import output as out

    out.begin("build", as_json)
    lock = lockfile.load(lock_path)
    if dry_run:
        recipe = render.render(lock, render.choose_base(lock, base_image),
                               render.repository_for(lock, registry),
                               render.default_code_tag(lock, run_id, tag), run_id=run_id)
        raise typer.Exit(out.emit({"recipe": render.dockerfile(recipe), **recipe.to_dict()},
                                  render.dockerfile(recipe)))
    from envlock.build import BuildOptions, build
    from envlock.engine import Engine
    from envlock.progress import Reporter

    options = BuildOptions(registry=registry, push=not no_push, base_image=base_image,
                           code_dir=code, tag=tag, run_id=run_id, no_cache=no_cache)
    with Reporter("envlock build") as reporter:
        result = build(lock, options, Engine.connect(), reporter)
    where = "pushed and pinned" if result.pushed else "local only (not pushed)"
    human = (f"environment {result.env_image} "
             f"({'reused from ' + result.env_reused if result.env_reused else 'built'})\n"
             f"image {result.image} {where}\n{result.pinned}")
    raise typer.Exit(out.emit(result.to_dict(), human))


def register(app: typer.Typer) -> None:
    app.command("build")(build_command)
