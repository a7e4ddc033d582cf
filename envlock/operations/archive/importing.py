"""``envlock import``: a verified archive's image pushed (``--registry``) or loaded, and
its run re-created with ``envlock.image`` set last."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from envlock import progress
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.registry import Registry, Sized
from envlock.errors import UsageError
from envlock.image import oci
from envlock.model import runrecord
from envlock.model.redact import strip_url_credentials
from envlock.operations import provenance
from envlock.operations.archive.format import (
    IMPORTED_FROM,
    Contents,
    ImageRecord,
    ImportResult,
    tags_to_copy,
)
from envlock.operations.archive.inputs import import_inputs
from envlock.operations.archive.verify import verify
from envlock.operations.inputs import TAG as INPUTS_TAG
from envlock.progress import Reporter, Silent

# ---------------------------------------------------------------- import

def import_archive(path: str | Path, *, registry: str | None = None,
                   experiment: str | None = None, tracker: TrackerLike | None = None,
                   engine: EngineLike | None = None,
                   credentials: tuple[str, str] | None = None,
                   reporter: Reporter | None = None) -> ImportResult:
    """Verify the archive, put its image in a registry (``HOST[:PORT]/REPO``) or this
    engine, and re-create its run in ``tracker`` (default: the current store)."""
    report = reporter or Silent()
    timings: dict[str, float] = {}
    started = time.monotonic()
    report.step(f"verifying {path}")
    contents = verify(path)
    attested = provenance.check_archive(contents)  # issue #27 hook: before anything is touched
    timings["verify"] = round(time.monotonic() - started, 2)
    target = _target(registry, contents) if registry else None
    if tracker is None:  # before the image: an unreachable server fails the import early
        from envlock.operations.connect import open_tracker

        tracker = open_tracker()
    result = ImportResult(
        run_id="", original_run_id=contents.run["run_id"],
        experiment=experiment or contents.run.get("experiment_name") or "Default",
        experiment_id="", tracking_uri=strip_url_credentials(tracker.uri) or "",
        image="", target="registry" if target else "engine",
        manifest_digest=contents.image.manifest_digest,
        config_digest=contents.image.config_digest, archive_sha256=contents.sha256,
        reused=False, timings=timings)
    mark = time.monotonic()
    if target:
        result.image = _push(contents, target, credentials, result, report)
    else:
        result.image = _load(contents, engine, report)
    # --- provenance hook (issue #27): the attestations go beside the pushed image ---
    result.warnings += provenance.attach_imported(result.image, attested, credentials)
    pinned_inputs = import_inputs(contents, target, credentials)  # issue #22
    timings["image"] = round(time.monotonic() - mark, 2)
    mark = time.monotonic()
    _recreate_run(tracker, contents, result, report,
                  {INPUTS_TAG: pinned_inputs} if pinned_inputs else {})
    timings["run"] = round(time.monotonic() - mark, 2)
    return result


def _target(registry: str, contents: Contents) -> oci.Reference:
    """``--registry HOST[:PORT]/REPO``; a bare host keeps the image's repository path."""
    value = registry.rstrip("/")
    if "/" not in value:
        value = f"{value}/{_repository_path(contents.image)}"
    try:
        ref = oci.parse_reference(value)
    except ValueError as exc:
        raise UsageError(f"--registry {registry}: {exc}", "use HOST[:PORT]/REPO") from exc
    if ref.tag or ref.digest:
        raise UsageError(f"--registry {registry} names a tag or digest",
                         "use HOST[:PORT]/REPO; the image keeps its digest")
    return ref


def _repository_path(image: ImageRecord) -> str:
    """The image's repository without its registry host (``envlock/imported`` if none)."""
    name = image.name or image.reference.partition("@")[0]
    if not name or name.startswith("sha256:"):
        return "envlock/imported"
    return oci.parse_reference(name, require_registry=False).repository or "envlock/imported"


def _push(contents: Contents, target: oci.Reference, credentials: tuple[str, str] | None,
          result: ImportResult, report: Reporter) -> str:
    from envlock.adapters.engine.errors import RegistryError

    registry = Registry(target.registry, credentials)
    report.step(f"pushing the image to {target.name}")
    for descriptor in contents.blobs():
        digest, size = descriptor["digest"], descriptor["size"]
        if registry.has_blob(target.repository, digest):
            result.blobs_existing += 1
            continue
        report.detail(f"uploading {digest[:19]}… ({size} bytes)")
        with contents.open(oci.blob_path(digest)) as data:
            registry.push_blob(target.repository, digest, size, Sized(progress.counting(
                data, f"pushing {digest[:19]}", size), size))
        result.blobs_pushed += 1
        result.bytes_pushed += size
    pushed = registry.put_manifest(target.repository, contents.run["run_id"],
                                   contents.manifest, contents.image.media_type)
    if pushed != contents.image.manifest_digest or \
            not registry.has_manifest(target.repository, pushed):
        raise RegistryError(f"registry {target.registry} does not hold "
                            f"{target.pinned(contents.image.manifest_digest)} after the push",
                            "retry the import")
    return target.pinned(pushed)


def _load(contents: Contents, engine: EngineLike | None, report: Reporter) -> str:
    from envlock.adapters.engine import Engine
    from envlock.adapters.engine.errors import EngineError

    engine = engine or Engine.connect()
    report.step(f"loading the image into the engine ({contents.image.size} bytes)")
    with contents.path.open("rb") as archive:
        engine.load(archive)
    info = engine.image(contents.image.config_digest)
    if info is None or info.id != contents.image.config_digest:
        raise EngineError(f"the engine loaded the archive but does not show image "
                          f"{contents.image.config_digest}")
    return str(info.id)


def _recreate_run(tracker: TrackerLike, contents: Contents, result: ImportResult,
                  report: Reporter, pinned: dict[str, str]) -> None:
    """The run in this store: reused if this run was imported before, else created with its
    params, metric histories, tags and artifacts; ``pinned`` (where its inputs are now)
    and ``envlock.image`` are set last."""
    record = contents.run
    result.experiment_id = tracker.experiment_named(result.experiment)
    previous = tracker.runs_tagged(result.experiment_id, IMPORTED_FROM, record["run_id"])
    complete = [r for r in previous if r.tags.get(runrecord.IMAGE)]
    if complete:
        run = complete[0]
        result.run_id, result.reused = run.run_id, True
        if run.tags.get(runrecord.ARCHIVE_SHA256) != contents.sha256:
            result.warnings.append(f"run {record['run_id']} was imported before (as "
                                   f"{run.run_id}) from another archive; kept that run")
        if run.tags[runrecord.IMAGE] != result.image or pinned:
            tracker.set_tags(run.run_id, {**pinned, runrecord.IMAGE: result.image})
        report.step(f"run {record['run_id']} was imported before: run {run.run_id}")
        return
    for stale in previous:  # an import interrupted before envlock.image was set
        tracker.delete_run(stale.run_id)
    lineage = {IMPORTED_FROM: record["run_id"],
               runrecord.IMPORTED_FROM_URI: record.get("source_tracking_uri") or "",
               runrecord.ARCHIVE_SHA256: contents.sha256}
    report.step(f"re-creating run {record['run_id']} in {result.tracking_uri}")
    run_id = tracker.create_run_at(result.experiment_id, record.get("run_name") or "",
                                   lineage, record.get("start_time"))
    result.run_id = run_id
    try:
        tracker.log_record(run_id, record.get("params") or {}, record.get("metrics") or {},
                           tags_to_copy(record))
        _upload_artifacts(tracker, contents, run_id)
        if record.get("status") and record["status"] != "RUNNING":
            tracker.finish_at(run_id, record["status"], record.get("end_time"))
        tracker.set_tags(run_id, {**pinned, runrecord.IMAGE: result.image})
    except BaseException:
        with contextlib.suppress(Exception):  # the run is incomplete: do not leave it
            tracker.delete_run(run_id)
        raise


def _upload_artifacts(tracker: TrackerLike, contents: Contents, run_id: str) -> None:
    names = contents.artifacts()
    if not names:
        return
    with tempfile.TemporaryDirectory(prefix="envlock-import-") as tmp:
        for name in names:
            target = Path(tmp) / name.split("/", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(contents.read(name))
        tracker.log_artifacts(run_id, Path(tmp))
