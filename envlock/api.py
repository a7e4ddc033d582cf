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
from pathlib import Path
from typing import Any

from envlock.adapters import fluent
from envlock.operations.capture import CaptureResult, request_from
from envlock.operations.capture import capture as _operation
from envlock.snapshot import readlog


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
    parent's capture, not captured each on its own.

    From this call on, the files the script opens for reading outside the interpreter,
    its packages and the tracked code are recorded (an audit hook; a file modified after
    this call is an output, never an input), logged on the run as
    ``envlock/inputs-read.json`` and pinned as the run's inputs."""
    if _installed:
        _installed["options"] = options
        return
    command, cwd = script_command(), os.getcwd()
    _installed["options"] = options
    recorder = readlog.recorder()
    recorder.start()

    def captured(run_id: str) -> None:
        _capture(run_id, {"python": sys.executable, "project": cwd, "command": command,
                          "reads": _reads(recorder, cwd), **_installed["options"]})
        recorder.start()  # the script's next top-level run reads afresh

    _installed["original"] = fluent.on_top_level_end(captured)


def _reads(recorder: readlog.Recorder, cwd: str) -> dict[str, Any]:
    """What the run read since recording began: ``envlock/inputs-read.json``'s record."""
    from envlock.model.readlog import record

    return record(*recorder.finish(Path(cwd)))


@contextlib.contextmanager
def tracked_run(**options: Any) -> Iterator[Any]:
    """``with envlock.tracked_run() as run:`` — an MLflow run captured when it ends, with
    the files it read (see :func:`autolog`)."""
    recorder = readlog.recorder()
    recorder.start()
    with fluent.started_run() as run:
        yield run
    options.setdefault("reads", _reads(recorder, os.getcwd()))
    capture(run.info.run_id, **options)
