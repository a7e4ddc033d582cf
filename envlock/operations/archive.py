"""``envlock export`` / ``envlock import``: a captured run and its image in one verifiable tar.

The archive is a plain (uncompressed) tar built from existing standards:

    oci-layout, index.json, blobs/sha256/…  the image as an OCI image layout
    manifest.json                           docker-archive index of the same blobs, so
                                            ``docker load`` (Docker 20.10 too) reads it
    envlock/envlock.lock.yaml, Dockerfile, git.diff, untracked.txt
                                            the run's artifacts under ``envlock/``
    envlock/run.json                        the run's MLflow metadata (``envlock.run/1``)
    envlock/MANIFEST.json                   every other file with its sha256 and size, and
                                            the image's digests (``envlock.archive/1``); last

An image pinned in a registry (``repo@sha256:…``) is copied from it by digest, so its
manifest digest stays the same; a local-only image comes from ``docker save``, its layers
gzipped on the way (their diff ids checked), and keeps its image id (= config digest).
Import verifies every digest before it touches anything, pushes (``--registry``) or loads
the image, and re-creates the run with ``envlock.image`` set last, so an imported run never
points at an image that does not exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from envlock import __version__
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.registry import Registry
from envlock.errors import EnvlockError, UsageError
from envlock.image import oci
from envlock.model.atomic import atomic_file
from envlock.model.redact import is_secret_name, scrub_text, strip_url_credentials
from envlock.progress import Reporter, Silent

SCHEMA = "envlock.archive/1"
RUN_SCHEMA = "envlock.run/1"
META_DIR = "envlock"
MANIFEST = f"{META_DIR}/MANIFEST.json"
RUN_JSON = f"{META_DIR}/run.json"
#: Read into memory while verifying, whatever their size (the rest only if small).
DOCUMENTS = ("oci-layout", "index.json", "manifest.json", RUN_JSON, MANIFEST)
#: Tags of the original run that are not copied: MLflow sets the name itself, a parent
#: run does not exist in the new store, and envlock.image is set last, to the new image.
NOT_COPIED = ("mlflow.runName", "mlflow.parentRunId", "mlflow.rootRunId", "envlock.image")
IMPORTED_FROM = "envlock.imported_from"
_SMALL = 4 << 20  # blobs kept in memory while verifying (configs, manifests)
_CHUNK = 1 << 20


class ArchiveError(EnvlockError):
    """An archive that cannot be read, is damaged, or was modified."""


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class ImageRecord:
    """The image inside an archive (``image`` of MANIFEST.json)."""

    reference: str  # the run's envlock.image when it was exported
    source: str  # "registry": copied by digest | "engine": docker save
    name: str | None  # repo:tag it is loaded as (docker-archive RepoTags)
    media_type: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layers: int
    size: int  # bytes of the config and layer blobs


@dataclass
class ExportResult:
    run_id: str
    archive: str
    sha256: str
    size: int
    image: ImageRecord
    files: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "image": asdict(self.image)}


@dataclass
class ImportResult:
    run_id: str
    original_run_id: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    image: str
    target: str  # "registry" | "engine"
    manifest_digest: str
    config_digest: str
    archive_sha256: str
    reused: bool
    blobs_pushed: int = 0
    blobs_existing: int = 0
    bytes_pushed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- pure parts

def portable_record(record: dict[str, Any], tracking_uri: str) -> dict[str, Any]:
    """``run.json``: the run's MLflow metadata without secret-looking tags and with
    credentials stripped from URLs (the tracking URI and any URL in a value)."""
    tags, withheld = {}, []
    for key, value in sorted(record["tags"].items()):
        if is_secret_name(key):
            withheld.append(key)
        else:
            tags[key] = scrub_text(value)
    return {"schema": RUN_SCHEMA, **record,
            "params": {k: scrub_text(v) for k, v in sorted(record["params"].items())},
            "tags": tags, "withheld_tags": withheld,
            "source_tracking_uri": strip_url_credentials(scrub_text(tracking_uri))}


def tags_to_copy(record: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in record["tags"].items()
            if k not in NOT_COPIED and not k.startswith("envlock.imported_")
            and k != "envlock.archive_sha256"}


def build_manifest(files: dict[str, tuple[str, int]], image: ImageRecord,
                   run_id: str) -> bytes:
    """``envlock/MANIFEST.json``: every other file of the archive with its digest."""
    document = {"schema": SCHEMA, "envlock_version": __version__, "run_id": run_id,
                "image": asdict(image),
                "files": [{"path": path, "sha256": digest, "size": size}
                          for path, (digest, size) in sorted(files.items())]}
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Member:
    path: str
    sha256: str
    size: int
    offset: int  # of the data in the archive file


@dataclass
class Contents:
    """A verified archive: what is in it and where."""

    path: Path
    sha256: str
    members: dict[str, Member]
    image: ImageRecord
    manifest: bytes  # the image manifest, exact bytes
    run: dict[str, Any]

    def open(self, name: str) -> _Slice:
        member = self.members[name]
        return _Slice(self.path, member.offset, member.size)

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def blobs(self) -> list[dict[str, Any]]:
        """Config and layer descriptors, each digest once."""
        seen: dict[str, dict[str, Any]] = {}
        for descriptor in oci.manifest_blobs(json.loads(self.manifest)):
            seen.setdefault(descriptor["digest"], descriptor)
        return list(seen.values())

    def artifacts(self) -> list[str]:
        return sorted(p for p in self.members
                      if p.startswith(META_DIR + "/") and p not in (MANIFEST, RUN_JSON))


def check_contents(members: dict[str, Member], small: dict[str, bytes]) -> tuple[
        ImageRecord, bytes, dict[str, Any]]:
    """Every digest of an archive against its MANIFEST.json, its blob names and the image's
    own documents. ``small`` holds the bytes of the small files. Raises ArchiveError."""
    document = _json(small, MANIFEST)
    if document.get("schema") != SCHEMA:
        raise ArchiveError(f"{MANIFEST} has schema {document.get('schema')!r}, not {SCHEMA}",
                           "export it again with this version of envlock")
    for path, member in members.items():
        if path.startswith("blobs/") and oci.digest_of_path(path) != member.sha256:
            raise ArchiveError(f"blob {path} does not match its digest (its content is "
                               f"{member.sha256[:19]}…)")
    _check_listing(document.get("files") or [], members)
    try:
        image = ImageRecord(**document["image"])
    except (KeyError, TypeError) as exc:
        raise ArchiveError(f"{MANIFEST} has no valid image record") from exc
    manifest = _check_image(image, members, small)
    run = _json(small, RUN_JSON)
    if run.get("schema") != RUN_SCHEMA or run.get("run_id") != document.get("run_id"):
        raise ArchiveError(f"{RUN_JSON} is not the run record of {document.get('run_id')}")
    return image, manifest, run


def _check_listing(files: list[dict[str, Any]], members: dict[str, Member]) -> None:
    listed = {str(entry.get("path")): (entry.get("sha256"), entry.get("size"))
              for entry in files}
    present = {p: (m.sha256, m.size) for p, m in members.items() if p != MANIFEST}
    for path in sorted(set(listed) | set(present)):
        if path not in present:
            raise ArchiveError(f"{path} is listed in {MANIFEST} but missing")
        if path not in listed:
            raise ArchiveError(f"{path} is not listed in {MANIFEST}")
        if listed[path] != present[path]:
            raise ArchiveError(f"{path} does not match its sha256 in {MANIFEST}")


def _check_image(image: ImageRecord, members: dict[str, Member],
                 small: dict[str, bytes]) -> bytes:
    index = _json(small, "index.json")
    manifests = index.get("manifests") or []
    if len(manifests) != 1 or manifests[0].get("digest") != image.manifest_digest:
        raise ArchiveError(f"index.json does not name the image {image.manifest_digest}")
    manifest = _blob(image.manifest_digest, manifests[0].get("size"), members, small)
    try:
        descriptors = oci.manifest_blobs(json.loads(manifest))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"the image manifest is not usable: {exc}") from exc
    if descriptors[0]["digest"] != image.config_digest:
        raise ArchiveError("the image manifest names another config than MANIFEST.json")
    for descriptor in descriptors:
        _blob(descriptor["digest"], descriptor["size"], members, None)
    expected = json.loads(oci.docker_manifest_json(json.loads(manifest), []))[0]
    docker = _json(small, "manifest.json")
    entry = docker[0] if isinstance(docker, list) and len(docker) == 1 else {}
    if (entry.get("Config"), entry.get("Layers")) != (expected["Config"], expected["Layers"]):
        raise ArchiveError("manifest.json (docker load) does not match the image manifest")
    return manifest


def _blob(digest: str, size: Any, members: dict[str, Member],
          small: dict[str, bytes] | None) -> bytes:
    path = oci.blob_path(digest)
    member = members.get(path)
    if member is None or member.size != size:
        raise ArchiveError(f"blob {digest[:19]}… is missing or has the wrong size")
    return small[path] if small is not None and path in small else b""


def _json(small: dict[str, bytes], name: str) -> Any:
    if name not in small:
        raise ArchiveError(f"{name} is missing", "is this an envlock export archive?")
    try:
        return json.loads(small[name])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{name} is not valid JSON") from exc


def safe_name(name: str) -> str:
    """A member name as a relative path; anything that could escape is refused."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts or not parts or "\\" in name:
        raise ArchiveError(f"unsafe member name {name!r} in the archive")
    return "/".join(parts)


# ---------------------------------------------------------------- byte streams

class _Slice:
    """A read-only window on a file (one member's data); has a length for HTTP uploads."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._handle = path.open("rb")
        self._handle.seek(offset)
        self._size, self._read = size, 0

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._read
        data = self._handle.read(left if n is None or n < 0 else min(n, left))
        self._read += len(data)
        return data

    def __len__(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._read

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(_CHUNK), b"")

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _Slice:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Hashing:
    """Pass-through reader or writer that hashes every byte."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.hash, self.count = inner, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.count += len(data)
        return bytes(data)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.count += len(data)
        return int(self.inner.write(data))

    def tell(self) -> int:
        return self.count

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Chunks:
    """A file-like view of an iterator of byte chunks (a registry download)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._buffer, self._pos = iter(chunks), b"", 0

    def read(self, n: int = -1) -> bytes:
        parts = []
        while n != 0:
            if self._pos >= len(self._buffer):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buffer, self._pos = chunk, 0
            left = len(self._buffer) - self._pos
            take = left if n < 0 else min(n, left)
            parts.append(self._buffer[self._pos:self._pos + take])
            self._pos += take
            n = n - take if n > 0 else n
        return b"".join(parts)


class _Writer:
    """Adds files to the archive tar (fixed owner, mode and time) and remembers each
    file's sha256 and size for MANIFEST.json."""

    def __init__(self, handle: BinaryIO, mtime: int) -> None:
        self.out = _Hashing(handle)
        self.tar = tarfile.TarFile(fileobj=self.out, mode="w",  # type: ignore[arg-type]
                                   format=tarfile.PAX_FORMAT, copybufsize=_CHUNK)
        self.mtime = mtime
        self.files: dict[str, tuple[str, int]] = {}
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            self._mkdir(parent)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, self.mtime, 0o644, 0, 0
        return info

    def _mkdir(self, name: str) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            self._mkdir(parent)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.mtime
        self.tar.addfile(info)
        self._dirs.add(name)

    def add_bytes(self, name: str, data: bytes) -> str:
        import io

        if name in self.files:
            return self.files[name][0]
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        self.files[name] = (oci.sha256_digest(data), len(data))
        return self.files[name][0]

    def add_stream(self, name: str, size: int, source: Any, expected: str | None) -> str:
        """Copy ``size`` bytes from ``source``; with ``expected``, they must hash to it."""
        if name in self.files:
            return self.files[name][0]
        reader = _Hashing(source)
        try:
            self.tar.addfile(self._info(name, size), reader)
        except OSError as exc:  # tarfile: "unexpected end of data"
            raise ArchiveError(f"{name}: the source ended early ({exc})") from exc
        digest = reader.digest()
        if expected and digest != expected:
            raise ArchiveError(f"{name}: the content does not match {expected}",
                               "the source changed while it was exported: try again")
        self.files[name] = (digest, size)
        return digest

    def close(self) -> None:
        self.tar.close()


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A temporary file next to ``path``, renamed onto it only when everything worked."""
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: directory {path.parent} does not exist")
    with atomic_file(path) as handle:
        yield handle


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
    reference = run.tags.get("envlock.image")
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
                                   _Chunks(registry.blob(ref.repository, descriptor["digest"])),
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


# ---------------------------------------------------------------- verify

def verify(path: str | Path) -> Contents:
    """Read the whole archive once, hash every file and check every digest. Nothing is
    written anywhere; a damaged or modified archive raises ArchiveError."""
    archive = Path(path)
    if not archive.is_file():
        raise UsageError(f"{archive}: no such archive file")
    members, small, digest = _scan(archive)
    try:
        image, manifest, run = check_contents(members, small)
    except ArchiveError as exc:
        exc.message = f"{archive}: {exc.message}"
        exc.hint = exc.hint or "the archive is damaged or was modified; export it again"
        raise
    return Contents(path=archive, sha256=digest, members=members, image=image,
                    manifest=manifest, run=run)


def _scan(archive: Path) -> tuple[dict[str, Member], dict[str, bytes], str]:
    members: dict[str, Member] = {}
    small: dict[str, bytes] = {}
    with archive.open("rb") as raw:
        reader = _Hashing(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    _scan_member(tar, info, members, small)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{archive}: not a readable tar archive ({exc})",
                               "the archive is damaged or truncated; export it again"
                               ) from exc
        while reader.read(_CHUNK):  # the end-of-archive padding counts for the file's sha256
            pass
    return members, small, reader.digest()


def _scan_member(tar: tarfile.TarFile, info: tarfile.TarInfo, members: dict[str, Member],
                 small: dict[str, bytes]) -> None:
    name = safe_name(info.name)
    if info.isdir():
        return
    if not info.isreg():
        raise ArchiveError(f"{name} is not a regular file (links and devices are refused)")
    if name in members:
        raise ArchiveError(f"{name} appears twice in the archive")
    handle = tar.extractfile(info)
    digest, kept = hashlib.sha256(), bytearray()
    keep = info.size <= _SMALL or name in DOCUMENTS
    for chunk in iter(lambda: handle.read(_CHUNK) if handle else b"", b""):
        digest.update(chunk)
        if keep:
            kept += chunk
    members[name] = Member(name, "sha256:" + digest.hexdigest(), info.size, info.offset_data)
    if keep:
        small[name] = bytes(kept)


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
    timings["verify"] = round(time.monotonic() - started, 2)
    target = _target(registry, contents) if registry else None
    if tracker is None:  # before the image: an unreachable server fails the import early
        from envlock.adapters.tracking import Tracker

        tracker = Tracker()
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
    timings["image"] = round(time.monotonic() - mark, 2)
    mark = time.monotonic()
    _recreate_run(tracker, contents, result, report)
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
            registry.push_blob(target.repository, digest, size, data)
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
                  report: Reporter) -> None:
    """The run in this store: reused if this run was imported before, else created with its
    params, metric histories, tags and artifacts; ``envlock.image`` is set last."""
    record = contents.run
    result.experiment_id = tracker.experiment_named(result.experiment)
    previous = tracker.runs_tagged(result.experiment_id, IMPORTED_FROM, record["run_id"])
    complete = [r for r in previous if r.tags.get("envlock.image")]
    if complete:
        run = complete[0]
        result.run_id, result.reused = run.run_id, True
        if run.tags.get("envlock.archive_sha256") != contents.sha256:
            result.warnings.append(f"run {record['run_id']} was imported before (as "
                                   f"{run.run_id}) from another archive; kept that run")
        if run.tags["envlock.image"] != result.image:
            tracker.set_tags(run.run_id, {"envlock.image": result.image})
        report.step(f"run {record['run_id']} was imported before: run {run.run_id}")
        return
    for stale in previous:  # an import interrupted before envlock.image was set
        tracker.delete_run(stale.run_id)
    lineage = {IMPORTED_FROM: record["run_id"],
               "envlock.imported_from_uri": record.get("source_tracking_uri") or "",
               "envlock.archive_sha256": contents.sha256}
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
        tracker.set_tags(run_id, {"envlock.image": result.image})
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
