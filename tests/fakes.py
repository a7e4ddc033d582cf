"""In-memory fakes of the engine and the tracker (``envlock.adapters.protocols``).

They model the contract the operations rely on, nothing more: images with ids, tags,
labels and registry digests; a registry as a dict; runs with tags, params, metrics,
status and ``envlock/`` artifacts. Every call is recorded in order (``calls``) so a test
can assert what happened when, and any method can be made to fail (``fail_on``) to test
what a failure part-way leaves behind. The integration suite keeps the real services.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from envlock.adapters.engine import ImageInfo, split_tag
from envlock.adapters.engine.errors import EngineError, RegistryError
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.tracking import ARTIFACT_DIR, RunData, UnknownRun
from envlock.model.runtree import RelayReport, RunNode, build_tree


def _sha(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str)
                                      .encode()).hexdigest()


class _Recorder:
    """Ordered call log and failure injection shared by both fakes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._failures: dict[str, list[BaseException]] = {}

    def fail_on(self, method: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (before doing anything)."""
        self._failures.setdefault(method, []).extend([error] * times)

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]


# ---------------------------------------------------------------- engine

@dataclass
class FakeImage:
    id: str
    labels: dict[str, str]
    layers: tuple[str, ...]
    changes: tuple[str, ...] = ()  # the instructions committed for its last layer
    created: str = ""
    repo_digests: set[str] = field(default_factory=set)


class FakeEngine(_Recorder):
    """Images by id, ``repo:tag`` and ``repo@digest``; a registry of pushed manifests."""

    def __init__(self, python: str = "3.11.7") -> None:
        super().__init__()
        self.images: dict[str, FakeImage] = {}
        self.tags: dict[str, str] = {}  # repo:tag -> image id
        self.registry: dict[str, str] = {}  # repo:tag and repo@digest -> manifest digest
        self.manifests: dict[str, FakeImage] = {}  # manifest digest -> image
        self.python = python
        self.remote: dict[str, FakeRegistry] = {}
        #: what a replay's container does: (image id, env, binds) -> exit code
        self.experiment: Callable[[str, dict[str, str], dict[str, Any]], int] = \
            lambda image, env, binds: 0

    # ------------------------------------------------------------ set-up helpers

    def add_image(self, reference: str, labels: dict[str, str] | None = None,
                  pushed: bool = False) -> FakeImage:
        """An image already in the engine as ``repo:tag`` (and in the registry if pushed)."""
        image = self._new(labels or {}, (_sha("layer", reference),))
        repository, tag = split_tag(reference)
        self.tags[f"{repository}:{tag or 'latest'}"] = image.id
        if pushed:
            self._publish(repository, tag or "latest", image)
        return image

    def publish(self, reference: str, labels: dict[str, str] | None = None) -> str:
        """An image in the registry only (a base image, or one pushed by another host)."""
        image = FakeImage(_sha(labels, reference), dict(labels or {}),
                          (_sha("layer", reference),))
        repository, tag = split_tag(reference)
        return self._publish(repository, tag or "latest", image)

    def _publish(self, repository: str, tag: str, image: FakeImage) -> str:
        digest = _sha("manifest", image.id)
        self.manifests[digest] = image
        self.registry[f"{repository}:{tag}"] = digest
        self.registry[f"{repository}@{digest}"] = digest
        image.repo_digests.add(f"{repository}@{digest}")
        return digest

    def _new(self, labels: dict[str, str], layers: tuple[str, ...],
             changes: tuple[str, ...] = (), created: str = "") -> FakeImage:
        """The id is the digest of the config: labels, layers and creation time."""
        image = FakeImage(_sha(labels, layers, created), dict(labels), layers, changes,
                          created)
        return self.images.setdefault(image.id, image)

    def _find(self, reference: str) -> FakeImage | None:
        if reference in self.images:
            return self.images[reference]
        if reference in self.tags:
            return self.images.get(self.tags[reference])
        return next((i for i in self.images.values() if reference in i.repo_digests), None)

    @staticmethod
    def _info(image: FakeImage, tags: Iterable[str]) -> ImageInfo:
        return ImageInfo(id=image.id, labels=dict(image.labels),
                         repo_digests=tuple(sorted(image.repo_digests)),
                         size=100 * len(image.layers), repo_tags=tuple(sorted(tags)))

    # ------------------------------------------------------------ images

    def image(self, reference: str) -> ImageInfo | None:
        self._call("image", reference)
        found = self._find(reference)
        if found is None:
            return None
        return self._info(found, [t for t, i in self.tags.items() if i == found.id])

    def registry_digest(self, reference: str) -> str | None:
        self._call("registry_digest", reference)
        return self.registry.get(reference)

    def attach(self, registry: FakeRegistry) -> None:
        """Pulls also reach ``registry`` (where envlock's registry client pushed)."""
        self.remote[registry.host] = registry

    def _pull_remote(self, reference: str) -> str | None:
        host, _, rest = reference.partition("/")
        repository, _, ref = rest.partition("@") if "@" in rest else rest.rpartition(":")
        registry = self.remote.get(host)
        data = registry.manifests.get((repository, ref)) if registry else None
        if registry is None or data is None:
            return None
        config_digest = json.loads(data)["config"]["digest"]
        config_doc = json.loads(registry.blobs[(repository, config_digest)])
        labels = (config_doc.get("config") or {}).get("Labels") or {}
        image = FakeImage(config_digest, dict(labels), tuple(config_doc["rootfs"]["diff_ids"]))
        return self._publish(f"{host}/{repository}", ref if "@" not in rest else "pulled",
                             image) if image else None

    def pull(self, reference: str, auth: dict[str, str] | None = None) -> ImageInfo:
        self._call("pull", reference, auth)
        digest = self.registry.get(reference)
        if digest is None and self._pull_remote(reference):
            image = self.manifests[self.registry[f"{reference.rpartition('@')[0]}:pulled"]
                                   if "@" in reference else self.registry[reference]]
            self.images.setdefault(image.id, image)
            image.repo_digests.add(reference)
            info = self.image(image.id)
            assert info is not None
            return info
        if digest is None:
            raise EngineError(f"pulling {reference}: manifest unknown")
        image = self.images.setdefault(self.manifests[digest].id, self.manifests[digest])
        if "@" not in reference:
            repository, tag = split_tag(reference)
            self.tags[f"{repository}:{tag or 'latest'}"] = image.id
        info = self.image(reference)
        assert info is not None
        return info

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._call("tag", image_id, repository, tag)
        self.tags[f"{repository}:{tag}"] = image_id

    def remove(self, reference: str) -> None:
        self._call("remove", reference)
        if reference in self.tags:
            image_id = self.tags.pop(reference)
            if image_id not in self.tags.values():
                self.images.pop(image_id, None)
        elif reference in self.images:
            self.images.pop(reference)
            self.tags = {t: i for t, i in self.tags.items() if i != reference}

    def save(self, reference: str, dest: BinaryIO) -> None:
        raise NotImplementedError("docker save is not modelled: export has integration tests")

    def load(self, archive: BinaryIO) -> list[str]:
        """A docker-archive: its ``manifest.json`` names the config (= the image id)."""
        self._call("load")
        entry: dict[str, Any] | None = None
        configs: dict[str, Any] = {}
        with tarfile.open(fileobj=archive, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                handle = tar.extractfile(member) if member.size < 1 << 20 else None
                data = handle.read() if handle is not None else b""
                if member.name == "manifest.json":
                    entry = json.loads(data)[0]
                elif data.startswith(b"{"):
                    configs[member.name] = json.loads(data)
        if entry is None:
            raise EngineError("the engine refused to load the image: no manifest.json")
        image_id = "sha256:" + entry["Config"].rsplit("/", 1)[-1]
        labels = (configs.get(entry["Config"], {}).get("config") or {}).get("Labels") or {}
        self.images.setdefault(image_id, FakeImage(image_id, dict(labels),
                                                   tuple(entry["Layers"])))
        for name in entry.get("RepoTags") or []:
            self.tags[name] = image_id
        return [image_id]

    # ------------------------------------------------------------ containers

    def run(self, image: str, command: list[str], *, user: str = "0:0",
            stdout_only: bool = False) -> tuple[int, bytes]:
        """Only the base's Python check is modelled (the fidelity probe is not)."""
        self._call("run", image, command)
        if self._find(image) is None:
            raise EngineError(f"image {image} is not in the engine")
        if "platform.python_version()" in " ".join(command):
            return 0, f"{self.python}\n".encode()
        raise NotImplementedError(f"FakeEngine.run does not model {command[:2]}")

    def run_experiment(self, args: Mapping[str, Any], *, on_output: Callable[[bytes], None],
                       timeout: float | None = None) -> int:
        """``args``: docker-py's create arguments (``replayspec.docker_args``)."""
        image = args["image"]
        self._call("run_experiment", image, args["command"], args["network_mode"])
        if self._find(image) is None:
            raise EngineError(f"image {image} is not in the engine")
        return self.experiment(image, args["environment"], args["volumes"])

    def version(self) -> dict[str, str | None]:
        return {"engine": "fake", "version": "0", "api_version": None, "os": "linux",
                "arch": "amd64", "kernel": None}


def _content(data: Any) -> str:
    raw = data if isinstance(data, bytes) else data.read()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- tracker

@dataclass
class FakeRun:
    run_id: str
    experiment_id: str
    name: str
    start_time: int
    status: str = "RUNNING"
    end_time: int | None = None
    deleted: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # path -> bytes

    def data(self) -> RunData:
        metrics = {k: float(max(v, key=lambda p: (p["step"], p["timestamp"]))["value"])
                   for k, v in self.history.items() if v}  # MLflow's latest: by step, time
        return RunData(run_id=self.run_id, experiment_id=self.experiment_id,
                       status=self.status, name=self.name, tags=dict(self.tags),
                       params=dict(self.params), metrics=metrics, start_time=self.start_time)


class FakeTracker(_Recorder):
    """Runs in dicts; ``tag_order(run)`` is every tag key in the order it was set."""

    def __init__(self, uri: str = "fake://store") -> None:
        super().__init__()
        self.uri = uri
        self.runs: dict[str, FakeRun] = {}
        self.experiments: dict[str, str] = {"Default": "0"}  # name -> id
        self._tag_log: list[tuple[str, str]] = []
        #: what the relay finds in the replay's file store: (store, replay run) -> report
        self.relay: Callable[[Path, str], RelayReport] = lambda store, run_id: RelayReport()

    # ------------------------------------------------------------ set-up helpers

    def add_run(self, experiment_id: str = "0", name: str = "train", *,
                tags: dict[str, str] | None = None, params: dict[str, str] | None = None,
                metrics: dict[str, float] | None = None, status: str = "FINISHED",
                artifacts: dict[str, bytes] | None = None,
                history: dict[str, list[tuple[int, float]]] | None = None) -> str:
        """A run; ``metrics`` logs one value each at step 0, ``history`` (step, value)
        points each."""
        run_id = self.create_run_at(experiment_id, name, dict(tags or {}), None)
        run = self.runs[run_id]
        run.params.update(params or {})
        run.history.update({k: [{"value": v, "step": 0, "timestamp": 1}]
                            for k, v in (metrics or {}).items()})
        run.history.update({k: [{"value": v, "step": step, "timestamp": i + 1}
                                for i, (step, v) in enumerate(points)]
                            for k, points in (history or {}).items()})
        run.status, run.artifacts = status, dict(artifacts or {})
        self.calls.clear()
        self._tag_log.clear()
        return run_id

    def tag_order(self, run_id: str) -> list[str]:
        return [key for rid, key in self._tag_log if rid == run_id]

    def active(self) -> list[FakeRun]:
        return [r for r in self.runs.values() if not r.deleted]

    def _get(self, run_id: str) -> FakeRun:
        if run_id not in self.runs:
            raise UnknownRun(f"no run {run_id} in the tracking store {self.uri}")
        return self.runs[run_id]

    # ------------------------------------------------------------ runs

    def run(self, run_id: str) -> RunData:
        self._call("run", run_id)
        return self._get(run_id).data()

    def resolve(self, run_id: str | None) -> tuple[RunData, str]:
        self._call("resolve", run_id)
        if run_id:
            return self._get(run_id).data(), "given"
        latest = max(self.active(), key=lambda r: r.start_time, default=None)
        if latest is None:
            raise UnknownRun(f"the store {self.uri} has no runs")
        return latest.data(), "the most recent run of the active experiment"

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        return self.create_run_at(experiment_id, name, tags, None)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._call("set_tags", run_id, dict(tags))
        run = self._get(run_id)
        for key, value in tags.items():
            run.tags[key] = value
            self._tag_log.append((run_id, key))

    def finish(self, run_id: str, ok: bool) -> None:
        self.finish_at(run_id, "FINISHED" if ok else "FAILED", None)

    # ------------------------------------------------------------ artifacts

    def log_artifacts(self, run_id: str, directory: Path) -> None:
        self._call("log_artifacts", run_id)
        run = self._get(run_id)
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                run.artifacts[f"{ARTIFACT_DIR}/{path.relative_to(directory).as_posix()}"] = \
                    path.read_bytes()

    def log_text(self, run_id: str, name: str, text: str) -> None:
        self._call("log_text", run_id, name)
        self._get(run_id).artifacts[f"{ARTIFACT_DIR}/{name}"] = text.encode()

    def download(self, run_id: str, name: str, dest: Path) -> Path:
        self._call("download", run_id, name)
        data = self._get(run_id).artifacts.get(f"{ARTIFACT_DIR}/{name}")
        if data is None:
            raise UnknownRun(f"run {run_id} has no artifact {ARTIFACT_DIR}/{name}")
        target = dest / ARTIFACT_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    # ------------------------------------------------------------ export / import

    def run_record(self, run_id: str) -> dict[str, Any]:
        self._call("run_record", run_id)
        run = self._get(run_id)
        names = {v: k for k, v in self.experiments.items()}
        return {"run_id": run.run_id, "run_name": run.name,
                "experiment_name": names.get(run.experiment_id, run.experiment_id),
                "status": run.status, "start_time": run.start_time, "end_time": run.end_time,
                "params": dict(run.params), "tags": dict(run.tags),
                "metrics": {k: list(v) for k, v in sorted(run.history.items())}}

    def download_envlock_dir(self, run_id: str, dest: Path) -> Path | None:
        self._call("download_envlock_dir", run_id)
        files = {p: d for p, d in self._get(run_id).artifacts.items()
                 if p.startswith(ARTIFACT_DIR + "/")}
        for path, data in files.items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(data)
        return dest / ARTIFACT_DIR if files else None

    def experiment_named(self, name: str) -> str:
        self._call("experiment_named", name)
        return self.experiments.setdefault(name, str(len(self.experiments)))

    def runs_tagged(self, experiment_id: str, key: str, value: str) -> list[RunData]:
        self._call("runs_tagged", experiment_id, key, value)
        return [r.data() for r in sorted(self.active(), key=lambda r: r.start_time)
                if r.experiment_id == experiment_id and r.tags.get(key) == value]

    def create_run_at(self, experiment_id: str, name: str, tags: dict[str, str],
                      start_time: int | None) -> str:
        self._call("create_run", experiment_id, name, dict(tags))
        run_id = f"{len(self.runs) + 1:032x}"
        self.runs[run_id] = FakeRun(run_id, experiment_id, name,
                                    start_time if start_time is not None else len(self.runs))
        for key, value in tags.items():
            self.runs[run_id].tags[key] = value
            self._tag_log.append((run_id, key))
        return run_id

    def log_record(self, run_id: str, params: dict[str, str],
                   metrics: dict[str, list[dict[str, Any]]], tags: dict[str, str]) -> None:
        self._call("log_record", run_id)
        run = self._get(run_id)
        run.params.update(params)
        for key, points in metrics.items():
            run.history.setdefault(key, []).extend(points)
        run.tags.update(tags)
        self._tag_log += [(run_id, key) for key in tags]

    def finish_at(self, run_id: str, status: str, end_time: int | None) -> None:
        self._call("finish", run_id, status)
        run = self._get(run_id)
        run.status, run.end_time = status, end_time

    def delete_run(self, run_id: str) -> None:
        self._call("delete_run", run_id)
        self._get(run_id).deleted = True

    # ------------------------------------------------------------ replay

    def relay_file_store(self, store: Path, run_id: str,
                         container_root: str | None = None) -> RelayReport:
        self._call("relay_file_store", run_id)
        return self.relay(store, run_id)

    def run_tree(self, run_id: str) -> RunNode:
        self._call("run_tree", run_id)
        root = self._get(run_id)
        parents = {r.run_id: r.tags["mlflow.parentRunId"] for r in self.active()
                   if "mlflow.parentRunId" in r.tags}
        nodes = {rid: _node(self.runs[rid]) for rid in parents}
        return build_tree(_node(root), parents, nodes)

    def artifact_digests_of(self, run_ids: list[str]) -> dict[str, dict[str, str]]:
        self._call("artifact_digests_of", *run_ids)
        return {rid: {p: "sha256:" + hashlib.sha256(d).hexdigest()
                      for p, d in self._get(rid).artifacts.items()
                      if not p.startswith(ARTIFACT_DIR + "/")} for rid in run_ids}


    def artifact_bytes(self, run_id: str, path: str, limit: int) -> bytes | None:
        self._call("artifact_bytes", run_id, path)
        data = self._get(run_id).artifacts.get(path)
        return data if data is not None and len(data) <= limit else None


def _node(run: FakeRun) -> RunNode:
    data = run.data()
    histories = {k: [(int(p["step"]), float(p["value"])) for p in sorted(
        v, key=lambda p: (p["step"], p["timestamp"]))] for k, v in run.history.items() if v}
    return RunNode(run.run_id, run.name, data.params, data.metrics, run.start_time,
                   status=run.status, histories=histories)



if TYPE_CHECKING:  # mypy tests/fakes.py: the fakes keep to the contract of the real ones
    _engine: EngineLike = FakeEngine()
    _tracker: TrackerLike = FakeTracker()


# ---------------------------------------------------------------- registry

class FakeRegistry(_Recorder):
    """The distribution API envlock's registry client speaks, over dicts: blobs and
    manifests per repository, cross-repository mounts (``mounts=False``: declined)."""

    def __init__(self, host: str, mounts: bool = True) -> None:
        super().__init__()
        self.host = host
        self.mounts = mounts
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.manifests: dict[tuple[str, str], bytes] = {}  # (repo, tag or digest) -> bytes

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        self._call("manifest", repository, reference)
        data = self.manifests.get((repository, reference))
        if data is None:
            raise RegistryError(f"reading the manifest {repository}@{reference}: not found "
                                f"in registry {self.host}")
        return data, str(json.loads(data).get("mediaType") or "")

    def has_manifest(self, repository: str, digest: str) -> bool:
        return (repository, digest) in self.manifests

    def find_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        data = self.manifests.get((repository, reference))
        return None if data is None else (data, str(json.loads(data).get("mediaType") or ""))

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """Like Debian's docker-registry 2.8: no referrers API (the tag schema stands in)."""
        self._call("referrers", repository, digest)
        return None

    def put_manifest(self, repository: str, tag: str, data: bytes, media_type: str) -> str:
        self._call("put_manifest", repository, tag)
        document = json.loads(data)
        if "manifests" in document:  # an index refers to manifests, not blobs
            missing = [d for d in document["manifests"]
                       if (repository, d["digest"]) not in self.manifests]
        else:
            missing = [d for d in [document["config"], *document["layers"]]
                       if (repository, d["digest"]) not in self.blobs]
        if missing:
            raise RegistryError(f"registry {self.host} refused the manifest: a "
                                "referenced blob is missing")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[(repository, tag)] = self.manifests[(repository, digest)] = data
        return digest

    def has_blob(self, repository: str, digest: str) -> bool:
        return (repository, digest) in self.blobs

    def blob(self, repository: str, digest: str, chunk: int = 1 << 20) -> Iterable[bytes]:
        self._call("blob", repository, digest)
        data = self.blobs.get((repository, digest))
        if data is None:
            raise RegistryError(f"downloading blob {digest[:19]}: not found")
        return iter([data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""])

    def push_blob(self, repository: str, digest: str, size: int, data: Any) -> None:
        self._call("push_blob", repository, digest)
        raw = data.read() if hasattr(data, "read") else b"".join(data)
        if len(raw) != size or "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise RegistryError(f"blob {digest[:19]}: digest or size mismatch")
        self.blobs[(repository, digest)] = raw

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        self._call("mount_blob", repository, digest, from_repository)
        if not self.mounts or (from_repository, digest) not in self.blobs:
            return False
        self.blobs[(repository, digest)] = self.blobs[(from_repository, digest)]
        return True


def publish_base(registry: FakeRegistry, repository: str = "library/python",
                 python: str = "3.11.7") -> str:
    """A minimal Debian-like base in ``registry`` (python3 -> python3.11 whose binary
    carries its version string, passwd, group); returns ``HOST/REPO@sha256:…``."""
    import gzip
    import io

    minor = ".".join(python.split(".")[:2])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name: str, data: bytes | None = None, link: str | None = None) -> None:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))

        add("usr/bin/python3", link=f"python{minor}")
        add(f"usr/bin/python{minor}", b"\x7fELF\x00" + python.encode() + b"\x00rest")
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
        add("etc/group", b"root:x:0:\n")
    layer_tar = buffer.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["python3"]},
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
                         "history": [{"created": "2024-01-01T00:00:00Z"}]}).encode()
    digests = {}
    for data in (layer, config):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        registry.blobs[(repository, digest)] = data
        digests[data] = digest
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": digests[config], "size": len(config)},
                           "layers": [{"mediaType":
                                       "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "digest": digests[layer], "size": len(layer)}]}).encode()
    return f"{registry.host}/{repository}@" + registry.put_manifest(repository, "latest", manifest,
                                                                  "")
