"""MLflow's fluent API (``mlflow.start_run`` and friends), for envlock's Python API.

The training script's own process is the only place envlock touches the fluent API: the
active run's id, a hook on ``end_run`` for :func:`envlock.autolog`, and a run started for
:func:`envlock.tracked_run`. mlflow is imported here, inside the functions, never at import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def active_run_id() -> str | None:
    import mlflow

    active = mlflow.active_run()
    return active.info.run_id if active else None


def on_top_level_end(callback: Callable[[str], None]) -> Callable[..., Any]:
    """Call ``callback(run_id)`` after each top-level run ends (``mlflow.end_run`` or leaving
    ``with mlflow.start_run()``); child runs (``mlflow.parentRunId``) are not reported.
    Returns the original ``end_run``."""
    import mlflow
    from mlflow.tracking import fluent

    original: Callable[..., Any] = fluent.end_run

    def end_run(*args: Any, **kwargs: Any) -> Any:
        active = mlflow.active_run()
        result = original(*args, **kwargs)
        if active is not None and "mlflow.parentRunId" not in active.data.tags:
            callback(active.info.run_id)
        return result

    fluent.end_run = end_run
    mlflow.end_run = end_run
    return original


@contextlib.contextmanager
def started_run() -> Iterator[Any]:
    """``mlflow.start_run()``, yielding MLflow's run object."""
    import mlflow

    with mlflow.start_run() as run:
        yield run
