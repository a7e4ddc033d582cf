"""``envlock config``: the effective settings and where each one came from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.options import JsonOpt


def config_command(
    project: Annotated[Path, typer.Option(
        "--project", help="Directory whose config applies (searched upwards to the "
        "repository root).")] = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show the effective settings and their source: flag > env var > config file > default.

    Settings live in [tool.envlock] of pyproject.toml or in envlock.yaml (ENVLOCK_CONFIG
    names a file explicitly)."""
    from envlock import config
    from envlock.cli import output as out

    out.begin("config", as_json)
    if not project.is_dir():
        from envlock.errors import UsageError

        raise UsageError(f"--project {project}: no such directory",
                         "pass the experiment's repository or a directory inside it")
    cfg = config.load(project)
    settings = {key: cfg.setting(key) for key in config.KEYS}
    result = {"file": str(cfg.path) if cfg.path else None,
              "settings": {key: {"value": _safe(s.value), "source": s.source}
                           for key, s in settings.items()}}
    rows = [("setting", "value", "source")]
    rows += [(key, _show(s.value), s.source) for key, s in settings.items()]
    human = (f"config file: {cfg.path or 'none (defaults)'}\n" + out.table(rows, indent=""))
    raise typer.Exit(out.emit(result, human))


def _safe(value: object) -> object:
    from envlock.model.redact import strip_url_credentials

    return strip_url_credentials(value) if isinstance(value, str) else value


def _show(value: object) -> str:
    if value in (None, [], {}):
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(value)
    return str(_safe(str(value)))


def register(app: typer.Typer) -> None:
    app.command("config")(config_command)
