"""Package indexes the installer was configured with (pip and uv), credentials stripped.

Index packages carry no record of the index they came from; the configured
indexes are the best evidence, and the build uses them to provision wheels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envlock.model.redact import strip_url_credentials

PYPI = "https://pypi.org/simple"


def pip_config_files(environ: Mapping[str, str], prefix: str | None) -> list[Path]:
    """pip's own order: global, user, site (later files win)."""
    if environ.get("PIP_CONFIG_FILE"):
        return [Path(environ["PIP_CONFIG_FILE"])]
    xdg = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    home = Path(environ.get("HOME", "~")).expanduser()
    files = [Path(d) / "pip" / "pip.conf" for d in xdg] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf",
              Path(environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
    if prefix:
        files.append(Path(prefix) / "pip.conf")
    return files


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split() if v]


def read_pip_config(files: list[Path]) -> dict[str, str]:
    merged: dict[str, str] = {}
    files = [path for path in files if path.is_file()]  # as configparser skips the others
    if not files:
        return merged
    import configparser  # ~2 ms: only where a pip config file exists

    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                merged.update({k: v for k, v in parser.items(section)})
    return merged


def index_section(environ: Mapping[str, str], prefix: str | None) -> dict[str, Any]:
    raw = configured(environ, prefix)
    return {"index_url": strip_url_credentials(raw["index_url"]),
            "extra_index_urls": [strip_url_credentials(u) for u in raw["extra_index_urls"]],
            "find_links": [strip_url_credentials(u) for u in raw["find_links"]],
            "no_index": raw["no_index"]}


def configured(environ: Mapping[str, str], prefix: str | None) -> dict[str, Any]:
    """The indexes and find-links pip (and uv) are configured with here, credentials
    kept (for fetching from them, never for recording)."""
    config = read_pip_config(pip_config_files(environ, prefix))
    index_url = (environ.get("PIP_INDEX_URL") or environ.get("UV_INDEX_URL")
                 or environ.get("UV_DEFAULT_INDEX") or config.get("index-url") or PYPI)
    extra = _split(environ.get("PIP_EXTRA_INDEX_URL") or config.get("extra-index-url"))
    extra += _split(environ.get("UV_EXTRA_INDEX_URL")) + _split(environ.get("UV_INDEX"))
    links = _split(environ.get("PIP_FIND_LINKS") or config.get("find-links"))
    return {
        "index_url": index_url, "extra_index_urls": extra, "find_links": links,
        "no_index": (environ.get("PIP_NO_INDEX") or config.get("no-index", "")).lower()
        in {"1", "true", "yes", "on"},
    }
