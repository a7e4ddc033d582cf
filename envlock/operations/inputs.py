"""Capture's and replay's inputs: find and pin what a run read, carry the copies to the
image's registry, and give them back to a replay.

Capture (:func:`pin`): the declared paths (``--input``, ``inputs = [...]``), the run's
MLflow datasets whose source is a local path, and the command line's existing paths are
hashed (:mod:`envlock.snapshot.inputs`), merged and given a carry
(:func:`envlock.model.inputs.decide_carry`). :func:`push` sends the copied files to the
registry of the image as one OCI artifact — a manifest whose layers are the files'
blobs, content-addressed by their sha256, so a blob the registry already has is not sent
again — pinned on the run by the ``envlock.inputs`` tag.

Replay (:func:`restore`): copied inputs are pulled into ``$ENVLOCK_CACHE/inputs/blobs``
(verified by hash) and mounted read-only where the run saw them; referenced inputs are
checked on this host against the lock first.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import EnvlockError, UsageError
from envlock.image import oci
from envlock.model import inputs as model
from envlock.model import runrecord
from envlock.model.inputs import Input

TAG = runrecord.INPUTS
ARTIFACT_TYPE = "application/vnd.envlock.inputs.v1+json"
BLOB_MEDIA = "application/octet-stream"
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"


@dataclass
class Pinned:
    """What capture pinned, and what it has to say about the rest."""

    inputs: tuple[Input, ...] = ()
    warnings: list[str] = field(default_factory=list)
    artifact: str | None = None  # HOST/REPO@sha256:… of the inputs' manifest
    pushed_bytes: int = 0
    pushed_blobs: int = 0
    reused_blobs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [{"path": i.path, "kind": i.kind, "size": i.size,
                            "sha256": i.sha256, "carry": i.carry, "sources": list(i.sources)}
                           for i in self.inputs],
                "artifact": self.artifact, "pushed_bytes": self.pushed_bytes,
                "pushed_blobs": self.pushed_blobs, "reused_blobs": self.reused_blobs}

    def table(self) -> str:
        if not self.inputs:
            return "inputs: none pinned"
        rows = [f"  {i.carry:<9} {model.human_size(i.size):>10}  {i.path}" for i in self.inputs]
        return "inputs:\n" + "\n".join(rows)


@dataclass(frozen=True)
class Sources:
    """Where capture looks for inputs: declared paths (flag and config), the recorded
    command, the run's MLflow datasets, when the run started (ms since the epoch)."""

    declared: Sequence[str] = ()
    configured: Sequence[str] = ()
    command: str | None = None
    datasets: Sequence[dict[str, Any]] = ()
    started_ms: int | None = None
    allow: tuple[str, ...] = ()
    #: Files the run read (envlock.autolog's audit hook), and those it wrote then read.
    read: Sequence[str] = ()
    read_outputs: Sequence[str] = ()
    s3: Any = None  # an envlock.adapters.s3.S3 (default: boto3's own configuration)


def pin(project: Path, sources: Sources, copy_max: int, can_copy: bool) -> Pinned:
    """Find, hash, merge and decide the carry of the run's inputs (see module docs)."""
    from envlock.snapshot import inputs as found_inputs

    tracked, ignored = found_inputs.git_files(project)
    datasets = found_inputs.dataset_paths(sources.datasets)
    paths = [*found_inputs.declared(sources.declared),
             *[(p, "config") for p in sources.configured],
             *[(p, "command") for p in found_inputs.command_paths(sources.command, project,
                                                                  tracked)],
             *[(p, "mlflow") for p, _facts in datasets],
             *[(p, "read") for p in sources.read]]
    scope = found_inputs.Scope(project, sources.started_ms * 1_000_000
                               if sources.started_ms else None, sources.allow)
    cache = found_inputs.load_cache()
    found = found_inputs.collect([p for p in paths if not model.is_remote(p[0])], scope, cache)
    found.inputs += remote_inputs([p for p in paths if model.is_remote(p[0])], sources.s3)
    found.outputs += [found_inputs.seen_as(Path(p), project) for p in sources.read_outputs]
    found_inputs.save_cache(cache)
    found_inputs.with_datasets(found, datasets, project)
    if found.missing:
        raise UsageError(f"input {', '.join(found.missing)}: no such file or directory",
                         "fix the path in --input or inputs = [...] in [tool.envlock]")
    decided, warnings = model.decide_carry(model.merge(found.inputs), copy_max, can_copy)
    warnings += _left_out(found, project, ignored, decided)
    return Pinned(inputs=decided, warnings=warnings)


def _left_out(found: Any, project: Path, ignored: list[str],
              pinned: Iterable[Input]) -> list[str]:
    from envlock.snapshot.inputs import ignored_data

    out = [f"{p} was modified after the run started: an output, not pinned as an input"
           for p in found.outputs]
    out += [f"input {s} looks like a secret: not pinned (keep a false positive with "
            f"--allow-file PATH)" for s in found.secrets]
    unpinned = ignored_data(project, ignored, pinned)
    if unpinned:
        listed = " ".join(unpinned[:5]) + (" …" if len(unpinned) > 5 else "")
        out.append(f"git-ignored data not pinned: {listed}; a replay will not have it "
                   f"(declare it: envlock capture --input {unpinned[0]}, or inputs = "
                   f"[\"{unpinned[0]}\"] in [tool.envlock])")
    return out


def remote_inputs(paths: Sequence[tuple[str, str]], s3: Any = None) -> list[Input]:
    """``s3://`` inputs by reference: size, ETag and VersionId from a HEAD request."""
    if not paths:
        return []
    out = []
    for url, source in paths:
        found = _head(url, s3)
        if found is None:
            raise UsageError(f"input {url}: no such S3 object",
                             "fix the URL in --input, inputs = [...] or the command line")
        out.append(model.remote(url, found["size"], found["etag"], found["version_id"],
                                (source,)))
    return out


def _head(url: str, s3: Any) -> dict[str, Any] | None:
    from envlock.adapters.s3 import S3

    try:
        bucket, key = model.s3_location(url)
    except ValueError as exc:
        raise UsageError(f"input {exc}", "name one object: s3://BUCKET/KEY") from exc
    return (s3 or S3()).head(bucket, key)


def reads(record: dict[str, Any] | None, run: Any, tracker: Any) -> tuple[list[str], list[str]]:
    """(inputs, outputs) the run was seen reading: ``record`` (envlock.autolog's, logged
    here on the run as ``envlock/inputs-read.json``), else the one a run logged earlier
    (tag ``envlock.inputs_read``), else none."""
    from envlock.model import readlog

    if record is not None:
        tracker.log_text(run.run_id, readlog.ARTIFACT, json.dumps(record, indent=1))
        tracker.set_tags(run.run_id, {readlog.TAG: str(len(record.get("read") or ()))})
        return readlog.read_paths(record), [str(p) for p in record.get("outputs") or ()]
    fetch = getattr(tracker, "artifact_bytes", None)
    if readlog.TAG not in run.tags or fetch is None:
        return [], []
    raw = fetch(run.run_id, f"envlock/{readlog.ARTIFACT}", 64 << 20)
    return readlog.read_paths(json.loads(raw) if raw else None), []


# ------------------------------------------------------------------ the registry

def artifact_manifest(blobs: Sequence[tuple[str, int, str]]) -> bytes:
    """The OCI manifest of the copied inputs: one layer per distinct blob (sha256), in
    path order, titled with the first path that has it."""
    layers, seen = [], set()
    for path, size, sha in sorted(blobs):
        if sha in seen:
            continue
        seen.add(sha)
        layers.append({"mediaType": BLOB_MEDIA, "digest": f"sha256:{sha}", "size": size,
                       "annotations": {"org.opencontainers.image.title": path}})
    return oci.canonical_json({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA, "digest": oci.sha256_digest(EMPTY_CONFIG),
                   "size": len(EMPTY_CONFIG)},
        "layers": layers})


def push(pinned: Pinned, image: str, project: Path, registry: Any) -> None:
    """Push the copied inputs' blobs (those the registry lacks) and their manifest to the
    repository of ``image`` (HOST/REPO@sha256:…); sets ``pinned.artifact``."""
    from envlock.adapters.registry import Sized

    ref = oci.parse_reference(image)
    blobs = [b for i in pinned.inputs if i.carry == "copy" for b in i.blobs()]
    if not blobs:
        return
    done: set[str] = set()
    for path, size, sha in blobs:
        digest = f"sha256:{sha}"
        if digest in done:
            continue
        done.add(digest)
        if registry.has_blob(ref.repository, digest):
            pinned.reused_blobs += 1
            continue
        local = Path(path) if path.startswith("/") else project / path
        with local.open("rb") as handle:
            registry.push_blob(ref.repository, digest, size, Sized(handle, size))
        pinned.pushed_bytes += size
        pinned.pushed_blobs += 1
    empty = oci.sha256_digest(EMPTY_CONFIG)
    if not registry.has_blob(ref.repository, empty):
        registry.push_blob(ref.repository, empty, len(EMPTY_CONFIG),
                           Sized(_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG)))
    manifest = artifact_manifest(blobs)
    tag = "inputs-" + oci.sha256_digest(manifest).split(":", 1)[1][:16]
    pinned.artifact = ref.pinned(registry.put_manifest(ref.repository, tag, manifest,
                                                       oci.OCI_MANIFEST))


def _bytes(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


# ------------------------------------------------------------------ replay

class InputsError(EnvlockError):
    """A replay's inputs are not as the run read them (missing, changed, not pullable)."""


@dataclass(frozen=True)
class Restored:
    """What a replay gets of the run's inputs: the read-only mounts (host path, container
    path), and the referenced inputs that differ (only with --allow-changed-inputs)."""

    mounts: tuple[tuple[str, str], ...] = ()
    changed: tuple[model.Change, ...] = ()


def restore(inputs: Sequence[Input], artifact: str | None, *, project: Path, workdir: str,
            allow_changed: bool = False, registry_for: Callable[[str], Any] | None = None,
            fetch: bool = True) -> Restored:
    """Check the referenced inputs on this host (a missing or changed one stops the replay
    unless ``allow_changed``), pull the copied ones into the cache; where each is mounted.
    ``fetch`` false (a dry run): the copies' places in the cache, nothing pulled."""
    referenced = [i for i in inputs if i.carry != "copy"]
    copied = [i for i in inputs if i.carry == "copy"]
    changed = tuple(check(referenced, project))
    if changed and not allow_changed:
        raise InputsError("the run's referenced inputs are not on this host as it read them: "
                          + "; ".join(c.describe() for c in changed),
                          "restore them, or replay anyway with --allow-changed-inputs "
                          "(the verdict then names them)")
    missing = {c.path for c in changed if c.what == "missing"}
    mounts = [(str(_host_path(i.path, project)), model.container_path(i.path, workdir))
              for i in referenced if i.path not in missing and i.kind != "remote"]
    if copied:
        if not artifact:
            raise InputsError(f"the run's copied inputs ({', '.join(i.path for i in copied)}) "
                              f"have no {TAG} tag: their capture did not finish",
                              "capture the run again with --registry")
        blobs = pull(copied, artifact, registry_for) if fetch else {}
        mounts += [(str(materialize(i, blobs) if fetch else cached_path(i)),
                    model.container_path(i.path, workdir)) for i in copied]
    return Restored(mounts=tuple(mounts), changed=changed)


def restore_shared(inputs: Sequence[Input], artifact: str | None, *, project: Path,
                   workdir: str, shared: Path, allow_changed: bool = False,
                   fetch: bool = True) -> Restored:
    """:func:`restore` for a cluster's nodes (Slurm), which see this host's files only on
    the filesystem they share with it. envlock cannot look at the nodes' mounts: it takes
    ``shared`` (``slurm.job_dir``, where every job's results already come back through)
    as that filesystem, and requires the cache the copies are pulled into, and each
    referenced file, to be on the same one (the same device). A referenced file outside
    it stops the replay unless ``allow_changed`` (the job then runs without it)."""
    if any(i.carry == "copy" for i in inputs) and not same_filesystem(blob_root(), shared):
        raise InputsError(f"the inputs cache {blob_root().parent.parent} is not on the "
                          f"filesystem the nodes share ({shared}): a job could not read the "
                          "run's copied inputs from it",
                          f"set ENVLOCK_CACHE to a folder on that filesystem, e.g. "
                          f"{shared}/cache (or slurm.job_dir to one beside the cache)")
    away = [i for i in inputs if i.carry != "copy" and i.kind != "remote"
            and not same_filesystem(_host_path(i.path, project), shared)]
    if away and not allow_changed:
        raise InputsError(f"{len(away)} referenced input(s) are not on the filesystem the "
                          f"nodes share ({shared}): {', '.join(i.path for i in away[:3])}",
                          "capture the run again with a copy cap that copies them "
                          "(inputs_copy_max in [tool.envlock]), or replay anyway with "
                          "--allow-changed-inputs (the job runs without them)")
    restored = restore([i for i in inputs if i not in away], artifact, project=project,
                       workdir=workdir, allow_changed=allow_changed, fetch=fetch)
    gone = tuple(model.Change(i.path, "missing", "not on the filesystem the nodes share")
                 for i in away)
    return Restored(mounts=restored.mounts, changed=restored.changed + gone)


def same_filesystem(path: Path, other: Path) -> bool:
    """Whether ``path`` and ``other`` (or, where they do not exist yet, their nearest
    existing folders) lie on one filesystem."""
    def device(where: Path) -> int:
        where = where.absolute()
        while not where.exists() and where != where.parent:
            where = where.parent
        return where.stat().st_dev

    return device(path) == device(other)


def _host_path(path: str, project: Path) -> Path:
    return Path(path) if path.startswith("/") else project / path


def check(referenced: Sequence[Input], project: Path) -> list[model.Change]:
    """The referenced inputs that this host does not have as recorded."""
    from envlock.snapshot import inputs as found_inputs

    if not referenced:
        return []
    cache = found_inputs.load_cache()
    now: dict[str, Input | None] = {}
    s3 = None
    for item in referenced:
        if item.kind == "remote":
            from envlock.adapters.s3 import S3

            s3 = s3 or S3()
            head = _head(item.path, s3)
            now[item.path] = None if head is None else model.remote(
                item.path, head["size"], head["etag"], head["version_id"])
            continue
        path = _host_path(item.path, project)
        now[item.path] = (found_inputs.current(path, item.path, cache, item.hub)
                          if path.exists() else None)
    # not saved: the cache holds only files capture scanned for secrets before hashing
    return model.verify(referenced, now)


def blob_root() -> Path:
    from envlock.snapshot.inputs import cache_root

    return cache_root() / "blobs" / "sha256"


def pull(copied: Sequence[Input], artifact: str, registry_for: Callable[[str], Any] | None
         ) -> dict[str, Path]:
    """sha256 -> the cached blob of every file of ``copied``, downloaded from the
    artifact's repository when not cached, each verified by its hash."""
    ref = oci.parse_reference(artifact)
    registry = None
    out: dict[str, Path] = {}
    for _path, size, sha in (b for i in copied for b in i.blobs()):
        target = blob_root() / sha
        if not target.is_file():
            if registry is None:
                registry = _registry(ref.registry, registry_for)
            _download(registry, ref.repository, sha, size, target)
        out[sha] = target
    return out


def _registry(host: str, registry_for: Callable[[str], Any] | None) -> Any:
    if registry_for is not None:
        return registry_for(host)
    from envlock.adapters.registry import Registry

    return Registry(host)


def _download(registry: Any, repository: str, sha: str, size: int, target: Path) -> None:
    import hashlib
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            for chunk in registry.blob(repository, f"sha256:{sha}"):
                digest.update(chunk)
                tmp.write(chunk)
        except EnvlockError as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise InputsError(f"input blob sha256:{sha[:12]} cannot be pulled: {exc.message}",
                              "is the registry the run was captured to reachable?") from exc
    if digest.hexdigest() != sha or Path(tmp.name).stat().st_size != size:
        Path(tmp.name).unlink(missing_ok=True)
        raise InputsError(f"input blob sha256:{sha[:12]} from {repository} does not match "
                          "its hash", "the registry holds different content: re-capture")
    os.chmod(tmp.name, 0o444)
    os.replace(tmp.name, target)


def cached_path(item: Input) -> Path:
    """Where a copied input lies once restored: a file's blob, a directory's tree."""
    if not item.is_tree:
        return blob_root() / item.sha256
    return blob_root().parent.parent / "trees" / item.sha256


def materialize(item: Input, blobs: dict[str, Path]) -> Path:
    """A file input: its cached blob. A directory input: a tree of links to the blobs at
    ``$ENVLOCK_CACHE/inputs/trees/<manifest sha256>`` (made once)."""
    if not item.is_tree:
        return blobs[item.sha256]
    root = cached_path(item)
    if root.is_dir():
        return root
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root.parent))
    for entry in item.files:
        target = work / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blobs[entry.sha256], target)
        except OSError:
            import shutil

            shutil.copyfile(blobs[entry.sha256], target)
            target.chmod(0o444)
    for folder in [work, *(p for p in work.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    with contextlib.suppress(OSError):  # another replay made it first: theirs is the same
        work.rename(root)
    return root


def record(pinned: Pinned) -> str:
    """The run's ``envlock/inputs.json``: what was pinned and where the copies are."""
    return json.dumps(pinned.to_dict(), indent=1, sort_keys=True)


def registry_client(host: str, auth: dict[str, str] | None) -> Any:
    from envlock.adapters.registry import Registry

    return Registry(host, (auth["username"], auth["password"]) if auth else None)
