"""The only place that talks to MLflow (its tracking client; imported lazily: ~1 s).

The store is ``MLFLOW_TRACKING_URI`` or MLflow's embedded default (SQLite
``mlflow.db`` in the working directory). MLflow failures become envlock errors
that name the store and say what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import EnvlockError

TAG_PREFIX = "envlock."
ARTIFACT_DIR = "envlock"


class TrackingError(EnvlockError):
    """The tracking store is unreachable or refused a request."""


class UnknownRun(EnvlockError):
    """No such run in the tracking store."""


@dataclass(frozen=True)
class RunData:
    run_id: str
    experiment_id: str
    status: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    start_time: int | None = None

    @property
    def started(self) -> str | None:
        """The run's start as RFC 3339 (UTC, seconds): the creation time of its image."""
        if not self.start_time:
            return None
        import time

        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.start_time // 1000))

    def envlock_tags(self) -> dict[str, str]:
        return {k: v for k, v in self.tags.items() if k.startswith(TAG_PREFIX)}


class Tracker:
    """MLflow through ``MlflowClient``; the client is made once per Tracker."""

    def __init__(self, uri: str | None = None) -> None:
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as exc:  # pragma: no cover - a dependency
            raise TrackingError("MLflow is not installed", "pip install mlflow") from exc
        if uri is None:
            from envlock import config

            config.load().apply_tracking_uri()  # the project's tracking_uri, if set
        self.uri = uri or str(mlflow.get_tracking_uri())
        if self.uri.startswith(("http://", "https://")):
            from envlock.provision import reachable

            if not reachable(self.uri):  # MLflow itself retries for minutes before failing
                raise TrackingError(f"tracking store {self.uri} is unreachable",
                                    "check MLFLOW_TRACKING_URI and that the server is up")
        self.client = MlflowClient(tracking_uri=self.uri)

    # ---------------------------------------------------------------- errors

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        import contextlib
        import sys

        from mlflow.exceptions import MlflowException

        try:  # MLflow prints "View run … at …" on stdout, which belongs to envlock's results
            with contextlib.redirect_stdout(sys.stderr):
                return func(*args, **kwargs)
        except MlflowException as exc:
            code = getattr(exc, "error_code", "")
            if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and \
                    "run" in what:
                raise UnknownRun(f"no run {args[0] if args else ''} in the tracking store "
                                 f"{self.uri}", "check the run ID (mlflow runs list) and "
                                 "MLFLOW_TRACKING_URI") from exc
            raise TrackingError(f"tracking store {self.uri}: {what} failed: "
                                f"{_first_line(exc)}", "check MLFLOW_TRACKING_URI and that "
                                "the server is up") from exc
        except (OSError, ConnectionError) as exc:
            raise TrackingError(f"tracking store {self.uri} is unreachable ({what}): "
                                f"{_first_line(exc)}", "check MLFLOW_TRACKING_URI and that "
                                "the server is up") from exc

    # ---------------------------------------------------------------- runs

    def run(self, run_id: str) -> RunData:
        run = self._call("reading run", self.client.get_run, run_id)
        return RunData(run_id=run.info.run_id, experiment_id=run.info.experiment_id,
                       status=run.info.status, name=run.info.run_name or "",
                       tags=dict(run.data.tags), params=dict(run.data.params),
                       metrics=dict(run.data.metrics), start_time=run.info.start_time)

    def latest_run(self) -> RunData:
        """The most recent run of the active experiment (MLFLOW_EXPERIMENT_NAME/ID or 0)."""
        experiment_id = self._active_experiment()
        runs = self._call("searching runs", self.client.search_runs, [experiment_id],
                          max_results=1, order_by=["attributes.start_time DESC"])
        if not runs:
            raise UnknownRun(f"experiment {experiment_id} of {self.uri} has no runs",
                             "pass --run-id, or run the training script first")
        return self.run(runs[0].info.run_id)

    def _active_experiment(self) -> str:
        if os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name:
            experiment = self._call("reading experiment", self.client.get_experiment_by_name,
                                    name)
            if experiment is None:
                raise UnknownRun(f"no experiment named {name!r} in {self.uri}")
            return str(experiment.experiment_id)
        return "0"

    def resolve(self, run_id: str | None) -> tuple[RunData, str]:
        """The run to act on: the flag, else MLFLOW_RUN_ID, else the latest run."""
        if run_id:
            return self.run(run_id), "given"
        if os.environ.get("MLFLOW_RUN_ID"):
            return self.run(os.environ["MLFLOW_RUN_ID"]), "MLFLOW_RUN_ID"
        return self.latest_run(), "the most recent run of the active experiment"

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._call("tagging run", self.client.set_tag, run_id, key, value)

    def log_artifacts(self, run_id: str, directory: Path) -> None:
        self._call("uploading artifacts", self.client.log_artifacts, run_id, str(directory),
                   ARTIFACT_DIR)

    def log_text(self, run_id: str, name: str, text: str) -> None:
        """One text artifact ``envlock/NAME`` (a replay's record, its host)."""
        self._call("uploading artifacts", self.client.log_text, run_id, text,
                   f"{ARTIFACT_DIR}/{name}")

    def download(self, run_id: str, name: str, dest: Path) -> Path:
        path = self._call("downloading artifacts", self.client.download_artifacts, run_id,
                          f"{ARTIFACT_DIR}/{name}", str(dest))
        return Path(path)

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        run = self._call("creating run", self.client.create_run, experiment_id,
                         tags=tags, run_name=name)
        return str(run.info.run_id)

    def finish(self, run_id: str, ok: bool) -> None:
        self._call("finishing run", self.client.set_terminated, run_id,
                   "FINISHED" if ok else "FAILED")

    def replays_of(self, run: RunData) -> list[RunData]:
        found = self._call("searching runs", self.client.search_runs, [run.experiment_id],
                           filter_string=f"tags.`envlock.replay_of` = '{run.run_id}'",
                           order_by=["attributes.start_time ASC"])
        return [self.run(r.info.run_id) for r in found]

    # ---------------------------------------------------------------- export / import

    def run_record(self, run_id: str) -> dict[str, Any]:
        """What an archive carries of a run: its experiment's name, times, status, params,
        tags, and every metric's full history (value, step, timestamp)."""
        run = self._call("reading run", self.client.get_run, run_id)
        experiment = self._call("reading experiment", self.client.get_experiment,
                                run.info.experiment_id)
        metrics = {key: [{"value": m.value, "step": m.step, "timestamp": m.timestamp}
                         for m in self._call("reading metric history",
                                             self.client.get_metric_history, run_id, key)]
                   for key in sorted(run.data.metrics)}
        return {"run_id": run.info.run_id, "run_name": run.info.run_name or "",
                "experiment_name": experiment.name, "status": run.info.status,
                "start_time": run.info.start_time, "end_time": run.info.end_time,
                "params": dict(run.data.params), "tags": dict(run.data.tags),
                "metrics": metrics}

    def download_envlock_dir(self, run_id: str, dest: Path) -> Path | None:
        """The run's ``envlock/`` artifacts downloaded into ``dest`` (None: it has none)."""
        found = self._call("listing artifacts", self.client.list_artifacts, run_id,
                           ARTIFACT_DIR)
        if not found:
            return None
        path = self._call("downloading artifacts", self.client.download_artifacts, run_id,
                          ARTIFACT_DIR, str(dest))
        return Path(path)

    def experiment_named(self, name: str) -> str:
        """The id of the experiment called ``name``, created if there is none."""
        experiment = self._call("reading experiment", self.client.get_experiment_by_name, name)
        if experiment is None:
            return str(self._call("creating experiment", self.client.create_experiment, name))
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} of {self.uri} is deleted",
                                "restore it (mlflow experiments restore) or pass --experiment")
        return str(experiment.experiment_id)

    def runs_tagged(self, experiment_id: str, key: str, value: str) -> list[RunData]:
        """The active runs of an experiment whose tag ``key`` equals ``value``."""
        quoted = value.replace("'", "\\'")
        found = self._call("searching runs", self.client.search_runs, [experiment_id],
                           filter_string=f"tags.`{key}` = '{quoted}'",
                           order_by=["attributes.start_time ASC"])
        return [self.run(r.info.run_id) for r in found]

    def create_run_at(self, experiment_id: str, name: str, tags: dict[str, str],
                      start_time: int | None) -> str:
        """A new run with a given start time (milliseconds), as an imported run keeps it."""
        run = self._call("creating run", self.client.create_run, experiment_id,
                         start_time=start_time, tags=tags, run_name=name)
        return str(run.info.run_id)

    def log_record(self, run_id: str, params: dict[str, str],
                   metrics: dict[str, list[dict[str, Any]]], tags: dict[str, str]) -> None:
        """Params, tags and full metric histories in batches (MLflow splits them)."""
        from mlflow.entities import Metric, Param, RunTag

        history = [Metric(key, float(point["value"]), int(point["timestamp"]),
                          int(point["step"]))
                   for key, points in metrics.items() for point in points]
        self._call("logging the run's data", self.client.log_batch, run_id, metrics=history,
                   params=[Param(k, v) for k, v in params.items()],
                   tags=[RunTag(k, v) for k, v in tags.items()])

    def finish_at(self, run_id: str, status: str, end_time: int | None) -> None:
        self._call("finishing run", self.client.set_terminated, run_id, status, end_time)

    def delete_run(self, run_id: str) -> None:
        self._call("deleting run", self.client.delete_run, run_id)

    def copy_from_file_store(self, store: Path, run_id: str) -> int:
        """Relay what the experiment logged inside its container (a private file store
        written by whatever MLflow the image has) into ``run_id`` of this store."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        if not store.is_dir() or not any(store.iterdir()):
            return 0
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x: maintenance mode
        inner = self._call("reading the replay's file store", MlflowClient,
                           tracking_uri=store.as_uri())
        copied = 0
        for experiment in self._call("reading the replay's file store",
                                     inner.search_experiments):
            for run in inner.search_runs([experiment.experiment_id]):
                metrics = [Metric(m.key, m.value, m.timestamp, m.step)
                           for key in run.data.metrics
                           for m in inner.get_metric_history(run.info.run_id, key)]
                params = [Param(k, v) for k, v in run.data.params.items()]
                tags = [RunTag(k, v) for k, v in run.data.tags.items()
                        if not k.startswith("mlflow.")]
                self._call("relaying metrics", self.client.log_batch, run_id,
                           metrics=metrics, params=params, tags=tags)
                artifacts = Path(inner.download_artifacts(run.info.run_id, "", str(store /
                                 f"_dl_{run.info.run_id}"))) if _has_artifacts(inner, run) \
                    else None
                if artifacts and any(artifacts.iterdir()):
                    self._call("relaying artifacts", self.client.log_artifacts, run_id,
                               str(artifacts))
                copied += 1
        return copied


def _has_artifacts(client: Any, run: Any) -> bool:
    try:
        return bool(client.list_artifacts(run.info.run_id))
    except Exception:  # noqa: BLE001 - no artifact repository: nothing to relay
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) < 300 else line[:297] + "..."

