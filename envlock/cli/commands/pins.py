"""``envlock pins``: a lock as requirements.txt (hash-pinned) or PEP 751 pylock.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

from envlock.cli.options import JsonOpt


def pins_command(
    target: Annotated[str, typer.Argument(help="Lockfile, or a captured MLflow run ID.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="requirements: requirements.txt with --hash lines; pylock: PEP 751 "
        "pylock.toml.", click_type=click.Choice(["requirements", "pylock"]))],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="File to write (pylock: pylock.toml or pylock.NAME.toml).")],
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Download every wheel again instead of using envlock's verified "
        "wheel cache.")] = False,
    keep_all: Annotated[bool, typer.Option(
        "--all", help="Keep installer tooling (pip, setuptools, wheel), which is left out "
        "by default as pip freeze leaves it out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pin a lock's packages for pip and uv, without envlock.

    Index packages are pinned to the sha256 of the wheel envlock verifies against the
    lock (the one the index serves for the lock's Python and platform); archives to their
    recorded sha256. VCS, directory and editable packages cannot be hash-pinned (a
    warning names each): requirements puts them in FILE's companion NAME.unhashed.txt.
    Installer tooling is left out unless --all. A package installed from a rebuild of
    its release (Debian's pip and setuptools in `python3 -m venv`) is pinned to the
    index's wheel of that version, with a warning.

      pip install --no-deps --require-hashes -r requirements.txt
      pip install --no-deps -r requirements.unhashed.txt   # when it exists
      uv pip install -r pylock.toml"""
    from envlock.cli import output as out
    from envlock.operations import targets
    from envlock.operations.pins import pins

    out.begin("pins", as_json)
    lock = targets.load(target)
    result = pins(lock, fmt, output, use_cache=not no_cache, keep_all=keep_all)
    for warning in result.warnings:
        out.warn(warning)
    lines = [f"wrote {result.output} ({result.hashed} of {result.packages} packages "
             "hash-pinned)"]
    if result.left_out:
        lines.append(f"left out installer tooling: {', '.join(result.left_out)} (--all keeps it)")
    if result.companion:
        lines.append(f"wrote {result.companion} ({result.unhashed} that cannot be "
                     "hash-pinned)")
    if fmt == "requirements":
        lines.append(f"install: pip install --no-deps --require-hashes -r {result.output}")
        if result.companion:
            lines.append(f"   then: pip install --no-deps -r {result.companion}")
    else:
        lines.append(f"install: uv pip install -r {result.output}")
    raise typer.Exit(out.emit(result.to_dict(), "\n".join(lines)))


def register(app: typer.Typer) -> None:
    app.command("pins")(pins_command)
