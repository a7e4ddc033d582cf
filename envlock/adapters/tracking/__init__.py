"""The only place that talks to MLflow (its tracking client; imported lazily: ~1 s).

The store is ``MLFLOW_TRACKING_URI`` or MLflow's embedded default (SQLite
``mlflow.db`` in the working directory). MLflow failures become envlock errors
that name the store and say what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.errors import EnvlockError
from envlock.model import runrecord

if TYPE_CHECKING:
    from envlock.model.runtree import RelayReport, RunNode

TAG_PREFIX = "envlock."
ARTIFACT_DIR = runrecord.ARTIFACT_DIR


class TrackingError(EnvlockError):
    """The tracking store is unreachable or refused a request."""


class StoreSchemaError(TrackingError):
    """A SQL store whose schema is not envlock's MLflow's: opening it would migrate it."""


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


#: Imported by ``mlflow/__init__`` for features a capture never uses (pandas datasets:
#: a third of importing MLflow); hidden from that import in the CLI's process.
_MLFLOW_OPTIONAL = ("pandas",)


def preload(lean: bool = False) -> Callable[[], None]:
    """MLflow, its client and (for a SQL store) its SQLAlchemy store imported, and its
    alembic chain read, in a thread of its own (a capture locks the environment
    meanwhile, mostly waiting on other processes): they take seconds of a code-only
    capture. Nothing is opened or written here (the store is opened after the audit
    gate, as before); a failure is left for the capture's own import to raise. ``lean``:
    ``_MLFLOW_OPTIONAL`` hidden while MLflow is imported, when neither is imported yet.
    Returns a function that waits for it."""
    import sys
    import threading

    hidden = [name for name in _MLFLOW_OPTIONAL if lean and "mlflow" not in sys.modules
              and name not in sys.modules]

    def warm() -> None:
        try:
            for name in hidden:
                sys.modules[name] = None  # type: ignore[assignment] # "import pandas" fails
            try:
                import mlflow
                from mlflow.tracking import MlflowClient  # noqa: F401 - for the Tracker
            finally:
                for name in hidden:
                    sys.modules.pop(name, None)
            from envlock.adapters.tracking import schema

            if schema.database_uri(str(mlflow.get_tracking_uri())):
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

                schema.installed()
        except Exception:  # noqa: BLE001, S110 - raised again where the capture imports it
            pass

    thread = threading.Thread(target=warm, name="envlock-mlflow-import", daemon=True)
    thread.start()
    return thread.join


class Tracker:
    """MLflow through ``MlflowClient``; the client is made once per Tracker."""

    def __init__(self, uri: str | None = None,
                 reachable: Callable[[str], bool] | None = None) -> None:
        """``uri``: the store (default: MLflow's own, ``MLFLOW_TRACKING_URI`` or its
        embedded SQLite ``mlflow.db``). ``reachable``: a quick probe of a server's address,
        asked first because MLflow itself retries for minutes before it fails."""
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as exc:  # pragma: no cover - a dependency
            raise TrackingError("MLflow is not installed", "pip install mlflow") from exc
        self.uri = uri or str(mlflow.get_tracking_uri())
        if (reachable is not None and self.uri.startswith(("http://", "https://"))
                and not reachable(self.uri)):
            raise TrackingError(f"tracking store {self.uri} is unreachable",
                                "check MLFLOW_TRACKING_URI and that the server is up")
        check_schema(self.uri)  # before MLflow, which would migrate an older store
        self.client = self._open(MlflowClient)

    def _open(self, client_class: Any) -> Any:
        """The client; a SQL store is opened (and its schema checked again) right here."""
        from mlflow.exceptions import MlflowException

        try:
            return client_class(tracking_uri=self.uri)
        except MlflowException as exc:
            if "out-of-date database schema" in str(exc):
                import mlflow

                raise TrackingError(
                    f"tracking store {self.uri} has a database schema this MLflow "
                    f"({mlflow.__version__}) does not know: {_first_line(exc)}",
                    "it was written by another MLflow version; install the training's "
                    "version beside envlock (pip install 'mlflow-skinny==VERSION'), or "
                    "upgrade an older store with 'mlflow db upgrade'") from exc
            raise TrackingError(f"tracking store {self.uri} cannot be opened: "
                                f"{_first_line(exc)}",
                                "check MLFLOW_TRACKING_URI") from exc

    # ---------------------------------------------------------------- errors

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        import contextlib
        import sys

        from mlflow.exceptions import MlflowException

        try:  # MLflow prints "View run … at …" on stdout, which belongs to envlock's results
            with contextlib.redirect_stdout(sys.stderr):
                return func(*args, **kwargs)
        except MlflowException as exc:
            if _no_such_run(exc, what):
                raise UnknownRun(f"no run {args[0] if args else ''} in the tracking store "
                                 f"{self.uri}", "check the run ID (mlflow runs list) and "
                                 "MLFLOW_TRACKING_URI") from exc
            refused = getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE",
                                                          "INVALID_STATE", "BAD_REQUEST")
            raise TrackingError(f"tracking store {self.uri}: {what} failed: "
                                f"{_first_line(exc)}",
                                "the store refused the request as it was made" if refused
                                else "check MLFLOW_TRACKING_URI and that the server is up"
                                ) from exc
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

    def datasets(self, run_id: str) -> list[dict[str, Any]]:
        """The run's MLflow dataset inputs: name, digest, source type and source."""
        run = self._call("reading run", self.client.get_run, run_id)
        found = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
        return [{"name": d.dataset.name, "digest": d.dataset.digest,
                 "source_type": d.dataset.source_type, "source": d.dataset.source}
                for d in found]

    def latest_run(self) -> RunData:
        """The most recent top-level run of the active experiment (MLFLOW_EXPERIMENT_NAME/
        ID or 0): after a search, its parent run, not the last candidate's child run."""
        experiment_id = self._active_experiment()
        runs = self._call("searching runs", self.client.search_runs, [experiment_id],
                          max_results=200, order_by=["attributes.start_time DESC"])
        if not runs:
            raise UnknownRun(f"experiment {experiment_id} of {self.uri} has no runs",
                             "pass --run-id, or run the training script first")
        top = next((r for r in runs if "mlflow.parentRunId" not in r.data.tags), runs[0])
        return self.run(top.info.run_id)

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

    def last_captured(self, experiment_name: str, last: int) -> list[RunData]:
        """The ``last`` newest captured runs of an experiment (an image pinned in a
        registry; replays and child runs left out), newest first."""
        experiment = self._call("reading experiment", self.client.get_experiment_by_name,
                                experiment_name)
        if experiment is None:
            raise TrackingError(f"no experiment {experiment_name!r} in {self.uri}",
                                "check the name: mlflow experiments search")
        found = self._call("searching runs", self.client.search_runs,
                           [experiment.experiment_id],
                           filter_string="tags.`envlock.image` LIKE '%@sha256:%'",
                           order_by=["attributes.start_time DESC"], max_results=1000)
        runs = [r for r in found if runrecord.REPLAY_OF not in r.data.tags
                and "mlflow.parentRunId" not in r.data.tags]
        return [self.run(r.info.run_id) for r in runs[:last]]

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

    def relay_file_store(self, store: Path, run_id: str,
                         container_root: str | None = None) -> RelayReport:
        """Relay the run tree the experiment logged inside its container (a private file
        store written by whatever MLflow the image has, mounted there at
        ``container_root``) into ``run_id`` and new child runs (envlock.adapters.tracking.relay)."""
        from mlflow.tracking import MlflowClient

        from envlock.adapters.tracking.relay import Relay, StoreView
        from envlock.model.runtree import RelayReport

        if not store.is_dir() or not any(store.iterdir()):
            return RelayReport(missing=["the experiment logged no MLflow run in the replay"])
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x: maintenance mode
        inner = self._call("reading the replay's file store", MlflowClient,
                           tracking_uri=store.as_uri())
        experiment = self.run(run_id).experiment_id
        view = StoreView(inner, container_root or str(store), store)
        with _quiet():
            return Relay(view, self.client, experiment, run_id).run()

    # ---------------------------------------------------------------- run trees

    def run_tree(self, run_id: str) -> RunNode:
        """The run and all its descendants (``mlflow.parentRunId``), each with its status
        and every metric's whole history, for comparison."""
        from envlock.model.runtree import build_tree

        root = self._call("reading run", self.client.get_run, run_id)
        nodes: dict[str, RunNode] = {}
        parents: dict[str, str] = {}
        frontier = [run_id]
        while frontier:
            parent = frontier.pop(0)
            for child in self._search(root.info.experiment_id,
                                      f"tags.`mlflow.parentRunId` = '{parent}'"):
                if child.info.run_id not in nodes and child.info.run_id != run_id:
                    nodes[child.info.run_id] = _node(child, self._histories(child))
                    parents[child.info.run_id] = parent
                    frontier.append(child.info.run_id)
        return build_tree(_node(root, self._histories(root)), parents, nodes)

    def _histories(self, run: Any) -> dict[str, list[tuple[int, float]]]:
        """Every metric's whole history, (step, value) by step, then in logging order."""
        out = {}
        for key in sorted(run.data.metrics):
            points = self._call("reading metric history", self.client.get_metric_history,
                                run.info.run_id, key)
            ordered = sorted(points, key=lambda m: (m.step, m.timestamp))
            out[key] = [(int(m.step), float(m.value)) for m in ordered]
        return out

    def replay_children(self, replay_id: str) -> list[RunData]:
        """The runs a relay created under a replay run (each tagged with its root)."""
        replay = self.run(replay_id)
        return [self.run(r.info.run_id) for r in self._search(
            replay.experiment_id, f"tags.`envlock.replay_root` = '{replay_id}'")]

    def _search(self, experiment_id: str, filter_string: str) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self._call("searching runs", self.client.search_runs, [experiment_id],
                              filter_string=filter_string, max_results=1000,
                              order_by=["attributes.start_time ASC"], page_token=token)
            found += page
            token = page.token
            if not token:
                return found

    # ---------------------------------------------------------------- artifacts

    def artifact_digests(self, run_id: str) -> dict[str, str]:
        """sha256 of every artifact of a run (envlock's own ``envlock/`` left out) and of
        the MLflow 3 models it logged (as ``models/NAME/PATH``)."""
        return self.artifact_digests_of([run_id])[run_id]

    def artifact_digests_of(self, run_ids: list[str]) -> dict[str, dict[str, str]]:
        """:meth:`artifact_digests` of several runs of one experiment: one search for
        their artifact locations and one for their models, whatever their number."""
        if not run_ids:
            return {}
        experiment = self.run(run_ids[0]).experiment_id
        quoted = ", ".join(f"'{r}'" for r in run_ids)
        runs = {r.info.run_id: r for r in self._search(experiment,
                                                        f"attributes.run_id IN ({quoted})")}
        models = self._models_by_run(experiment)
        out: dict[str, dict[str, str]] = {}
        for run_id in run_ids:
            if run_id not in runs:
                raise UnknownRun(f"no run {run_id} in experiment {experiment} of {self.uri}")
            digests = {path: sha for path, sha in
                       self._digests(runs[run_id].info.artifact_uri).items()
                       if not path.startswith(ARTIFACT_DIR + "/")}
            seen: dict[str, int] = {}
            for model in models.get(run_id, []):
                seen[model.name] = seen.get(model.name, 0) + 1
                label = model.name if seen[model.name] == 1 else \
                    f"{model.name}#{seen[model.name]}"
                for path, sha in self._digests(model.artifact_location).items():
                    digests[f"models/{label}/{path}"] = sha
            out[run_id] = digests
        return out

    def artifact_bytes(self, run_id: str, path: str, limit: int) -> bytes | None:
        """One artifact file of a run, when it is at most ``limit`` bytes (else None)."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="envlock-artifact-") as tmp:
            local = Path(self._call("downloading artifacts", self.client.download_artifacts,
                                    run_id, path, tmp))
            if not local.is_file() or local.stat().st_size > limit:
                return None
            return local.read_bytes()

    def _models_by_run(self, experiment_id: str) -> dict[str, list[Any]]:
        search = getattr(self.client, "search_logged_models", None)
        found: dict[str, list[Any]] = {}
        token = None
        while search is not None:
            page = self._call("searching models", search, experiment_ids=[experiment_id],
                              page_token=token)
            for model in page:
                found.setdefault(model.source_run_id or "", []).append(model)
            token = page.token
            if not token:
                break
        return {k: sorted(v, key=lambda m: (m.creation_timestamp or 0, m.model_id))
                for k, v in found.items()}

    def _digests(self, uri: str | None) -> dict[str, str]:
        """Hash in place when the artifacts are on this machine; else download first."""
        import tempfile

        local = _local_path(uri)
        if local is not None:
            return _hash_tree(local) if local.is_dir() else {}
        import mlflow.artifacts

        with tempfile.TemporaryDirectory(prefix="envlock-artifacts-") as tmp:
            path = self._call("downloading artifacts", mlflow.artifacts.download_artifacts,
                              artifact_uri=uri, dst_path=tmp, tracking_uri=self.uri)
            return _hash_tree(Path(path))


def check_schema(uri: str) -> None:
    """Refuse a SQL store whose schema is not the head of envlock's MLflow, read without
    writing (envlock.adapters.tracking.schema); a new store passes."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from envlock.adapters.tracking import schema
    from envlock.model.redact import strip_url_credentials

    if not schema.database_uri(uri):
        return
    shown = strip_url_credentials(uri) or uri
    try:
        revision = schema.read_revision(uri)
    except (sqlite3.Error, SQLAlchemyError, ImportError) as exc:  # ImportError: no driver
        raise TrackingError(f"tracking store {shown} cannot be read: {_first_line(exc)}",
                            "check MLFLOW_TRACKING_URI") from exc
    if revision is None:
        return
    ours = schema.installed()
    if revision != ours.head:
        raise StoreSchemaError(*schema.problem(shown, revision, ours))


def _node(run: Any, histories: dict[str, list[tuple[int, float]]]) -> RunNode:
    from envlock.model.runtree import RunNode

    return RunNode(run.info.run_id, run.info.run_name or "", dict(run.data.params),
                   dict(run.data.metrics), run.info.start_time or 0,
                   status=run.info.status or "", histories=histories)


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def _hash_tree(root: Path) -> dict[str, str]:
    import hashlib

    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[path.relative_to(root).as_posix()] = "sha256:" + digest.hexdigest()
    return out


def _quiet() -> Any:
    """MLflow prints "View run … at …" on stdout, which belongs to envlock's results."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr)


def _no_such_run(exc: Any, what: str) -> bool:
    """MLflow's answer for a run that does not exist, or an ID that cannot be one; not
    any INVALID_PARAMETER_VALUE (an over-long tag key is one too)."""
    code = getattr(exc, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return "run" in what
    return code == "INVALID_PARAMETER_VALUE" and "'run_id'" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) < 300 else line[:297] + "..."

