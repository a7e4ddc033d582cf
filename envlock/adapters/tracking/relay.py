"""Relay the run tree an experiment logged inside its replay container into the real store.

The container's MLflow (2.x or 3.x, skinny or full) writes to a private file store that
envlock mounts into it. Read with the host's MLflow, every run of that store becomes a
run of the replay: the first top-level run is the replay run itself, every other run
becomes its descendant (``mlflow.parentRunId`` re-pointed), each with its name, params,
full metric histories, tags, dataset inputs, artifacts, and the MLflow 3 logged models
it produced (with their artifacts, params, tags and metrics linked to the new ids).

The file store records artifact locations as paths *inside the container*; they are
mapped back to the host directory that was mounted there. Nothing is dropped silently:
whatever cannot be carried is listed in the report, which makes the replay's verdict
``not reproduced (relay incomplete: …)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from envlock.model import runrecord
from envlock.model.runtree import PARENT_TAG, RelayReport

#: What :meth:`Relay.attempt` returns for a call that failed (MLflow calls return None).
FAILED: Any = object()

#: Tags MLflow derives itself, or that are re-pointed: never copied from the container.
_NOT_COPIED = (PARENT_TAG, "mlflow.runName")


class StoreView:
    """The container's file store, read on the host: its runs, tree and artifact dirs."""

    def __init__(self, client: Any, container_root: str, host_root: Path) -> None:
        self.client = client
        self.container_root = container_root.rstrip("/")
        self.host_root = host_root

    def local(self, uri: str | None) -> Path | None:
        """A container artifact URI as a host path (None: outside the mounted store)."""
        path = (uri or "").removeprefix("file://")
        if path == self.container_root or path.startswith(self.container_root + "/"):
            return self.host_root / path[len(self.container_root):].lstrip("/")
        return None

    def runs(self) -> list[Any]:
        from mlflow.entities import ViewType

        experiments = [e.experiment_id for e in
                       self.client.search_experiments(view_type=ViewType.ALL)]
        found: list[Any] = []
        token = None
        while experiments:
            page = self.client.search_runs(experiments, run_view_type=ViewType.ALL,
                                           max_results=1000, page_token=token)
            found += page
            token = page.token
            if not token:
                break
        return [self.client.get_run(r.info.run_id) for r in found]  # with inputs/outputs

    def models(self, experiment_ids: list[str]) -> list[Any]:
        search = getattr(self.client, "search_logged_models", None)
        if search is None or not experiment_ids:
            return []
        found: list[Any] = []
        token = None
        while True:
            page = search(experiment_ids=experiment_ids, page_token=token)
            found += page
            token = page.token
            if not token:
                return found


def order(runs: list[Any]) -> tuple[Any, list[Any], dict[str, str]]:
    """The counterpart of the replay run (the first top-level run), every other run
    parents-first, and each run's parent (other top-level runs hang under the first)."""
    ids = {r.info.run_id for r in runs}
    by_start = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    parents = {r.info.run_id: r.data.tags[PARENT_TAG] for r in runs
               if r.data.tags.get(PARENT_TAG) in ids}
    roots = [r for r in by_start if r.info.run_id not in parents]
    top = roots[0] if roots else by_start[0]
    for other in roots[1:]:
        parents[other.info.run_id] = top.info.run_id
    queue, done = [top.info.run_id], []
    while queue:
        current = queue.pop(0)
        done.append(current)
        queue += [r.info.run_id for r in by_start if parents.get(r.info.run_id) == current]
    rank = {run_id: i for i, run_id in enumerate(done)}
    rest = sorted((r for r in runs if r.info.run_id in rank and r is not top),
                  key=lambda r: rank[r.info.run_id])
    return top, rest, parents


class Relay:
    """One relay: container store -> ``replay_id``'s tree in the host client's store."""

    def __init__(self, view: StoreView, client: Any, experiment_id: str, replay_id: str
                 ) -> None:
        self.view, self.client = view, client
        self.experiment_id, self.replay_id = experiment_id, replay_id
        self.report = RelayReport()
        self.models: dict[str, str] = {}  # container model id -> host model id
        self.model_points: dict[tuple[str, str, int, int], Any] = {}

    def attempt(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call into MLflow; a failure is recorded as missing, never raised or dropped."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, see module docs
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.report.missing.append(f"{what}: {first[:200]}")
            return FAILED

    def run(self) -> RelayReport:
        runs = self.attempt("reading the replay's store", self.view.runs)
        if runs is FAILED or not runs:
            if runs is not FAILED:
                self.report.missing.append("the experiment logged no run in the replay")
            return self.report
        top, rest, parents = order(runs)
        self.report.mapping[top.info.run_id] = (self.replay_id, top.info.run_name or "")
        for inner in rest:
            self._create(inner, parents)
        experiments = sorted({r.info.experiment_id for r in runs})
        models = self.attempt("reading logged models", self.view.models, experiments)
        for model in [] if models is FAILED else models:
            self._model(model)
        for inner in (top, *rest):
            self._data(inner)
        for inner in rest:
            target = self.report.mapping.get(inner.info.run_id)
            if target:
                self.attempt(f"finishing run {target[1]}", self.client.set_terminated,
                             target[0], inner.info.status, inner.info.end_time)
        return self.report

    def _create(self, inner: Any, parents: dict[str, str]) -> None:
        parent = self.report.mapping.get(parents.get(inner.info.run_id, ""))
        name = inner.info.run_name or ""
        if parent is None:
            self.report.missing.append(f"run {name}: its parent run was not relayed")
            return
        created = self.attempt(f"creating run {name}", self.client.create_run,
                               self.experiment_id, start_time=inner.info.start_time,
                               tags={PARENT_TAG: parent[0], runrecord.REPLAY_ROOT: self.replay_id},
                               run_name=name or None)
        if created is not FAILED:
            self.report.mapping[inner.info.run_id] = (created.info.run_id, name)

    def _model(self, model: Any) -> None:
        source = self.report.mapping.get(model.source_run_id or "")
        created = self.attempt(
            f"creating model {model.name}", self.client.create_logged_model,
            self.experiment_id, name=model.name, source_run_id=source[0] if source else None,
            tags=dict(model.tags or {}), params=dict(model.params or {}),
            model_type=model.model_type)
        if created is FAILED:
            return
        self.models[model.model_id] = created.model_id
        for point in model.metrics or []:
            self.model_points[(point.run_id or "", point.key, point.step, point.timestamp)] = point
        local = self.view.local(model.artifact_location)
        if local is None:
            self.report.missing.append(f"artifacts of model {model.name}: stored at "
                                       f"{model.artifact_location}, outside the replay's store")
        elif local.is_dir() and any(local.iterdir()):
            files, size = _count(local)
            if self.attempt(f"uploading model {model.name}", self.client.log_model_artifacts,
                            created.model_id, str(local)) is not FAILED:
                self.report.artifacts += files
                self.report.artifact_bytes += size
        status = getattr(model.status, "name", str(model.status))
        if status in ("READY", "FAILED"):
            self.attempt(f"finalizing model {model.name}", self.client.finalize_logged_model,
                         created.model_id, status)
        self.report.models += 1

    def _data(self, inner: Any) -> None:
        target = self.report.mapping.get(inner.info.run_id)
        if target is None:
            return
        run_id, name = target
        metrics = list(self._history(inner, name))
        params = [_param(k, v) for k, v in inner.data.params.items()]
        tags = [_tag(k, v) for k, v in inner.data.tags.items()
                if k not in _NOT_COPIED and not k.startswith("envlock.")]
        if self.attempt(f"params, metrics and tags of run {name}", self.client.log_batch,
                        run_id, metrics=metrics, params=params, tags=tags) is not FAILED:
            self.report.runs += 1
            self.report.params += len(params)
            self.report.metric_points += len(metrics)
            self.report.tags += len(tags)
        self._inputs_outputs(inner, run_id, name)
        self._artifacts(inner, run_id, name)

    def _history(self, inner: Any, name: str) -> Iterator[Any]:
        from mlflow.entities import Metric

        source = inner.info.run_id
        for key in sorted(inner.data.metrics):
            points = self.attempt(f"metric {key} of run {name}",
                                  self.view.client.get_metric_history, source, key)
            for m in [] if points is FAILED else points:
                linked = self.model_points.get((source, key, m.step, m.timestamp))
                model = self.models.get(linked.model_id) if linked is not None else None
                yield Metric(key, m.value, m.timestamp, m.step, model_id=model,
                             dataset_name=getattr(linked or m, "dataset_name", None),
                             dataset_digest=getattr(linked or m, "dataset_digest", None))

    def _inputs_outputs(self, inner: Any, run_id: str, name: str) -> None:
        from mlflow.entities import LoggedModelInput, LoggedModelOutput

        inputs, outputs = getattr(inner, "inputs", None), getattr(inner, "outputs", None)
        datasets = list(getattr(inputs, "dataset_inputs", None) or [])
        models = [LoggedModelInput(self.models[m.model_id])
                  for m in getattr(inputs, "model_inputs", None) or []
                  if m.model_id in self.models]
        if (datasets or models) and self.attempt(
                f"dataset inputs of run {name}", self.client.log_inputs, run_id,
                datasets=datasets, models=models or None) is not FAILED:
            self.report.datasets += len(datasets)
        produced = [LoggedModelOutput(self.models[m.model_id], m.step)
                    for m in getattr(outputs, "model_outputs", None) or []
                    if m.model_id in self.models]
        if produced:
            self.attempt(f"model outputs of run {name}", self.client.log_outputs, run_id,
                         produced)

    def _artifacts(self, inner: Any, run_id: str, name: str) -> None:
        local = self.view.local(inner.info.artifact_uri)
        if local is None:
            self.report.missing.append(f"artifacts of run {name}: stored at "
                                       f"{inner.info.artifact_uri}, outside the replay's store")
            return
        if not local.is_dir() or not any(local.iterdir()):
            return
        files, size = _count(local)
        if self.attempt(f"artifacts of run {name}", self.client.log_artifacts, run_id,
                        str(local)) is not FAILED:
            self.report.artifacts += files
            self.report.artifact_bytes += size


def _count(directory: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))
    return files, size


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value)


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)
