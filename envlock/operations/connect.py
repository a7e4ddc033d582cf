"""Connections a command sets up before its operation: registry credentials, the Docker
engine (logged in where asked), the tracking store. Orchestration only: every client is
imported inside the function that makes it, so commands stay fast to start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from envlock.model import runrecord

if TYPE_CHECKING:
    from envlock.adapters.tracking import Tracker

Credentials = tuple[str, str]


def read_credentials(username: str | None, password_stdin: bool,
                     stdin: IO[str] | None = None) -> Credentials | None:
    """(user, password) from --registry-username + --registry-password-stdin, else None."""
    from envlock.errors import UsageError

    if bool(username) != password_stdin:
        raise UsageError("--registry-username and --registry-password-stdin go together",
                         "echo \"$TOKEN\" | envlock … --registry-username USER "
                         "--registry-password-stdin")
    if not username:
        return None
    password = (stdin or sys.stdin).readline().rstrip("\r\n")
    if not password:
        raise UsageError("--registry-password-stdin read an empty password",
                         "pipe the password or token into envlock")
    return username, password


def as_auth(credentials: Credentials | None) -> dict[str, str] | None:
    """Credentials in the form the registry client and the builders take."""
    return {"username": credentials[0], "password": credentials[1]} if credentials else None


def registry_auth(username: str | None, password_stdin: bool) -> dict[str, str] | None:
    """The registry credentials the flags give, read from stdin, or None."""
    return as_auth(read_credentials(username, password_stdin))


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
    return engine, as_auth(credentials)


def connect_engine(registry: str | None, username: str | None, password_stdin: bool,
                   builder: str = "docker") -> Any:
    """The engine, logged in to ``registry``'s host when credentials were given."""
    return build_setup(registry, username, password_stdin, builder)[0]


def engine_for_run(tracker: Any, run_id: str, username: str | None,
                   password_stdin: bool) -> Any:
    """The engine for replaying a run, logged in to the registry holding the run's image
    when credentials were given."""
    registry = None
    if username:
        registry = tracker.run(run_id).tags.get(runrecord.IMAGE) or ""
        if "@sha256:" not in registry:
            from envlock.errors import UsageError

            raise UsageError(f"run {run_id} has no image in a registry to log in to",
                             "drop --registry-username; its image is local or not captured")
    return connect_engine(registry, username, password_stdin)


def open_tracker(uri: str | None = None, project: Path | None = None) -> Tracker:
    """The tracking store: ``uri``, else ``MLFLOW_TRACKING_URI``, else the project's
    ``tracking_uri`` (config found from ``project``, default the working directory), else
    MLflow's default. A server is probed first; a SQL store's schema is checked before
    MLflow opens it (the adapter gets the probe from here: no adapter reaches up into the
    configuration or the operations)."""
    from envlock import config
    from envlock.adapters.tracking import Tracker
    from envlock.operations.build.provision import reachable

    if uri is None:
        config.load(project).apply_tracking_uri()
    return Tracker(uri, reachable=reachable)
