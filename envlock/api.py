"""Python API for training scripts: capture at the end of a run, or automatically.

    import envlock, mlflow
    envlock.autolog(registry="registry.example.com/team/proj")
    with mlflow.start_run():
        ...            # train and log as usual; the environment is captured when the run ends
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from envlock.adapters import fluent
from envlock.operations.capture import CaptureResult, request_from
from envlock.operations.capture import capture as _operation


def script_command() -> str:
    """The command line of the running script, as a user would type it."""
    return shlex.join(["python", *sys.argv])


def capture(run_id: str | None = None, **options: Any) -> CaptureResult:
    """Capture the environment of ``run_id`` (default: the active or latest MLflow run).

    Options are the fields of :class:`envlock.operations.capture.CaptureRequest`
    (``registry``, ``base_image``, ``build``, ``push``, ``python``, ``project``,
    ``command``…) and capture's collaborators (``tracker``, ``engine``, ``reporter``…). By
    default the interpreter, working directory and command line of the running script are
    recorded."""
    options.setdefault("python", sys.executable)
    options.setdefault("project", os.getcwd())
    options.setdefault("command", script_command())
    return _capture(run_id or fluent.active_run_id(), options)


def _capture(run_id: str | None, options: dict[str, Any]) -> CaptureResult:
    request, using = request_from(run_id, options)
    return _operation(request, **using)


_installed: dict[str, Any] = {}


def autolog(**options: Any) -> None:
    """Capture automatically when the active top-level MLflow run ends (``mlflow.end_run``
    or leaving ``with mlflow.start_run()``), recording this script's command line and
    directory. Child runs (a search's candidates, ``nested=True``) are part of their
    parent's capture, not captured each on its own."""
    if _installed:
        _installed["options"] = options
        return
    command, cwd = script_command(), os.getcwd()
    _installed["options"] = options

    def captured(run_id: str) -> None:
        _capture(run_id, {"python": sys.executable, "project": cwd, "command": command,
                          **_installed["options"]})

    _installed["original"] = fluent.on_top_level_end(captured)


@contextlib.contextmanager
def tracked_run(**options: Any) -> Iterator[Any]:
    """``with envlock.tracked_run() as run:`` — an MLflow run captured when it ends."""
    with fluent.started_run() as run:
        yield run
    capture(run.info.run_id, **options)
