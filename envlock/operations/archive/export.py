"""``envlock export``: a captured run and its image (from its registry by digest, or
from the engine) into one archive."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from envlock import progress
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.registry import Chunks, Registry
from envlock.errors import EnvlockError, UsageError
from envlock.image import oci
from envlock.model import runrecord
from envlock.operations import provenance
from envlock.operations.archive.format import (
    _CHUNK,
    MANIFEST,
    META_DIR,
    RUN_JSON,
    ArchiveError,
    ExportResult,
    ImageRecord,
    build_manifest,
    portable_record,
)
from envlock.operations.archive.inputs import export_inputs
from envlock.operations.archive.streams import _atomic, _Writer
from envlock.progress import Reporter, Silent

# ---------------------------------------------------------------- export

def export(run_id: str, output: str | Path, *, tracker: TrackerLike,
           engine: EngineLike | None = None,
           credentials: tuple[str, str] | None = None,
           reporter: Reporter | None = None) -> ExportResult:
    """Write the run ``run_id`` of ``tracker`` and its image to the tar ``output``.

    ``engine``: an Engine, or None to connect when the image has to come from it."""
    report = reporter or Silent()
    started = time.monotonic()
    run = tracker.run(run_id)
    reference = run.tags.get(runrecord.IMAGE)
    if not reference:
        raise UsageError(f"run {run_id} has no envlock image",
                         f"capture it first: envlock capture --run-id {run_id}")
    record = portable_record(tracker.run_record(run_id), tracker.uri)
    warnings: list[str] = []
    path = Path(output)
    with tempfile.TemporaryDirectory(prefix="envlock-export-") as tmp:
        report.step(f"downloading the envlock/ artifacts of run {run_id}")
        downloaded = tracker.download_envlock_dir(run_id, Path(tmp) / "artifacts")
        files = _artifact_files(downloaded)
        record["artifacts"] = sorted(f"{META_DIR}/{rel}" for rel in files)
        with _atomic(path) as handle:
            writer = _Writer(handle, int((record.get("start_time") or 0) // 1000))
            source = _ImageSource(writer, run_id, engine, credentials, report, Path(tmp))
            image = source.write(reference, warnings)
            # --- provenance hook (issue #27): the image's attestations travel along ---
            warnings += provenance.export_attestations(writer.add_bytes, reference, credentials)
            export_inputs(writer, run.tags, files.get("envlock.lock.yaml"), credentials,
                          report)  # issue #22: an archive replays with no registry
            for rel, local in files.items():
                with local.open("rb") as data:
                    writer.add_stream(f"{META_DIR}/{rel}", local.stat().st_size, data, None)
            writer.add_bytes(RUN_JSON, json.dumps(record, indent=2, sort_keys=True).encode())
            count = len(writer.files)
            writer.add_bytes(MANIFEST, build_manifest(writer.files, image, run_id))
            writer.close()
            digest, size = writer.out.digest(), writer.out.count
    return ExportResult(run_id=run_id, archive=str(path), sha256=digest, size=size,
                        image=image, files=count + 1,
                        seconds=round(time.monotonic() - started, 2), warnings=warnings)


def _artifact_files(directory: Path | None) -> dict[str, Path]:
    if directory is None:
        return {}
    files = {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
             if p.is_file()}
    clash = {f"{META_DIR}/{rel}" for rel in files} & {MANIFEST, RUN_JSON}
    if clash:
        raise UsageError(f"the run has an artifact named {sorted(clash)[0]}, which the archive "
                         "format reserves", "rename that artifact")
    return files


class _ImageSource:
    """Writes the run's image into the archive: from its registry by digest, else (a
    local-only image, or a registry that cannot be reached) from the engine."""

    def __init__(self, writer: _Writer, run_id: str, engine: EngineLike | None,
                 credentials: tuple[str, str] | None, report: Reporter, tmp: Path) -> None:
        self.writer, self.run_id, self.engine = writer, run_id, engine
        self.credentials, self.report, self.tmp = credentials, report, tmp

    def write(self, reference: str, warnings: list[str]) -> ImageRecord:
        if "@sha256:" not in reference:
            return self.from_engine(reference, reference)
        try:
            ref = oci.parse_reference(reference)
        except ValueError as exc:
            raise UsageError(f"the run's image {reference} is not a registry reference: "
                             f"{exc}") from exc
        self.report.step(f"reading the manifest of {reference}")
        try:
            registry = Registry(ref.registry, self.credentials)
            data, media = registry.manifest(ref.repository, str(ref.digest))
        except EnvlockError as exc:
            local = self._local_copy(reference)
            if local is None:
                raise
            warnings.append(f"{exc.message}; exported the engine's copy instead: its image id "
                            "is kept, the registry manifest digest is not")
            return self.from_engine(local, reference)
        return self.from_registry(registry, ref, data, media)

    def _engine(self) -> EngineLike:
        if self.engine is None:
            from envlock.adapters.engine import Engine

            self.engine = Engine.connect()
        return self.engine

    def _local_copy(self, reference: str) -> str | None:
        try:
            info = self._engine().image(reference)
        except EnvlockError:
            return None
        return str(info.id) if info is not None else None

    def from_registry(self, registry: Any, ref: oci.Reference, data: bytes,
                      media: str) -> ImageRecord:
        digest = oci.sha256_digest(data)
        if digest != ref.digest:
            raise ArchiveError(f"registry {ref.registry} returned a manifest with digest "
                               f"{digest}, not {ref.digest}")
        manifest = _single_image(data, ref.pinned(digest))
        descriptors = oci.manifest_blobs(manifest)
        self.writer.add_bytes("oci-layout", oci.oci_layout())
        for number, descriptor in enumerate(descriptors):
            self.report.detail(f"blob {number + 1}/{len(descriptors)} "
                               f"{descriptor['digest'][:19]}… ({descriptor['size']} bytes)")
            self.writer.add_stream(oci.blob_path(descriptor["digest"]), descriptor["size"],
                                   progress.counting(
                                       Chunks(registry.blob(ref.repository,
                                                            descriptor["digest"])),
                                       f"downloading {descriptor['digest'][:19]}",
                                       int(descriptor["size"])),
                                   descriptor["digest"])
        self.report.step(f"copied {len(descriptors)} blobs of {ref.pinned(digest)}")
        name = f"{ref.name}:{self.run_id}"
        return self._finish(data, media or str(manifest.get("mediaType")), manifest, name,
                            ref.pinned(digest), "registry")

    def from_engine(self, image: str, reference: str) -> ImageRecord:
        from envlock.adapters.engine.errors import EngineError

        engine = self._engine()
        info = engine.image(image)
        if info is None:
            raise EngineError(f"image {image} of run {self.run_id} is not in this engine",
                              "export on the host that built it, or push it first")
        names = [t for t in info.repo_tags if t.endswith(f":{self.run_id}")]
        saved = self.tmp / "saved.tar"
        self.report.step(f"saving {info.id[:19]}… from the engine")
        with saved.open("wb") as handle:
            engine.save(info.id, handle)
        with tarfile.open(saved) as source:
            config, layers = self._engine_layers(source, info.id)
        saved.unlink()
        data = oci.image_manifest(config, layers)
        name = names[0] if names else None
        return self._finish(data, oci.OCI_MANIFEST, json.loads(data), name, reference, "engine")

    def _engine_layers(self, source: tarfile.TarFile,
                       image_id: str) -> tuple[bytes, list[tuple[str, int, str]]]:
        """Config and layers of a ``docker save`` tar, written as blobs (config digest =
        image id; an uncompressed layer is gzipped, its diff id checked while doing so)."""
        from envlock.adapters.engine.errors import EngineError

        entry = json.loads(_member_bytes(source, "manifest.json"))[0]
        config = _member_bytes(source, entry["Config"])
        if oci.sha256_digest(config) != image_id:
            raise EngineError(f"docker save of {image_id[:19]}… returned another config")
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        self.writer.add_bytes("oci-layout", oci.oci_layout())
        self.writer.add_bytes(oci.blob_path(image_id), config)
        layers = []
        for number, (name, diff_id) in enumerate(zip(entry["Layers"], diff_ids, strict=True)):
            member = source.getmember(name)
            media = oci.layer_media_type(_member_head(source, member))
            self.report.detail(f"layer {number + 1}/{len(diff_ids)} {diff_id[:19]}… "
                               f"({member.size} bytes)")
            if media == oci.OCI_LAYER:  # docker save writes them uncompressed: gzip them
                layers.append(self._gzipped(source.extractfile(member), diff_id))
                continue
            expected = _member_digest(source, member)
            self.writer.add_stream(oci.blob_path(expected), member.size,
                                   source.extractfile(member), expected)
            layers.append((expected, member.size, media))
        return config, layers

    def _gzipped(self, layer: Any, diff_id: str) -> tuple[str, int, str]:
        """An uncompressed layer as a gzip blob (zlib's default level, a header without
        time or name, so the same layer always gives the same blob); its bytes must hash
        to ``diff_id`` on the way."""
        import zlib

        plain, packed = hashlib.sha256(), hashlib.sha256()
        packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)
        staged = self.tmp / "layer.gz"
        with staged.open("wb") as out:
            for chunk in iter(lambda: layer.read(_CHUNK), b""):
                plain.update(chunk)
                data = packer.compress(chunk)
                packed.update(data)
                out.write(data)
            data = packer.flush()
            packed.update(data)
            out.write(data)
        if "sha256:" + plain.hexdigest() != diff_id:
            raise ArchiveError(f"layer {diff_id[:19]}… changed while it was saved",
                               "the image changed while it was exported: try again")
        digest, size = "sha256:" + packed.hexdigest(), staged.stat().st_size
        with staged.open("rb") as handle:
            self.writer.add_stream(oci.blob_path(digest), size, handle, digest)
        staged.unlink()
        return digest, size, oci.OCI_LAYER + "+gzip"

    def _finish(self, data: bytes, media: str, manifest: dict[str, Any], name: str | None,
                reference: str, source: str) -> ImageRecord:
        digest = self.writer.add_bytes(oci.blob_path(oci.sha256_digest(data)), data)
        self.writer.add_bytes("index.json", oci.index_json(media, digest, len(data), name))
        self.writer.add_bytes("manifest.json",
                              oci.docker_manifest_json(manifest, [name] if name else []))
        config, *layers = oci.manifest_blobs(manifest)
        return ImageRecord(reference=reference, source=source, name=name, media_type=media,
                           manifest_digest=digest, manifest_size=len(data),
                           config_digest=config["digest"], layers=len(layers),
                           size=sum(d["size"] for d in (config, *layers)))


def _single_image(data: bytes, reference: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
        oci.manifest_blobs(manifest)
    except (ValueError, json.JSONDecodeError) as exc:
        raise UsageError(f"{reference} cannot be exported: {exc}",
                         "envlock exports single-platform images") from exc
    return dict(manifest)


def _member_bytes(source: tarfile.TarFile, name: str) -> bytes:
    handle = source.extractfile(name)
    if handle is None:
        raise ArchiveError(f"docker save output lacks {name}")
    return handle.read()


def _member_head(source: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = source.extractfile(member)
    return handle.read(4) if handle else b""


def _member_digest(source: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    digest = hashlib.sha256()
    handle = source.extractfile(member)
    for chunk in iter(lambda: handle.read(_CHUNK) if handle else b"", b""):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()
