"""Connections made the same way for every command: the tracking store.

The adapter (envlock.adapters.tracking) knows MLflow; what this project's configuration
says and how a server is probed are given to it from here, so no adapter reaches up into
the configuration or the operations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envlock.adapters.tracking import Tracker


def open_tracker(uri: str | None = None, project: Path | None = None) -> Tracker:
    """The tracking store: ``uri``, else ``MLFLOW_TRACKING_URI``, else the project's
    ``tracking_uri`` (config found from ``project``, default the working directory), else
    MLflow's default. A server is probed first; a SQL store's schema is checked."""
    from envlock import config
    from envlock.adapters.tracking import Tracker
    from envlock.operations.build.provision import reachable

    if uri is None:
        config.load(project).apply_tracking_uri()
    return Tracker(uri, reachable=reachable)
