"""Pure: the archive's format — its constants, the results, the run record made portable,
the MANIFEST, and the verification of an archive's members against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from envlock import __version__
from envlock.errors import EnvlockError
from envlock.image import oci
from envlock.model import runrecord
from envlock.model.redact import is_secret_name, scrub_text, strip_url_credentials

SCHEMA = "envlock.archive/1"
RUN_SCHEMA = "envlock.run/1"
META_DIR = "envlock"
MANIFEST = f"{META_DIR}/MANIFEST.json"
RUN_JSON = f"{META_DIR}/run.json"
#: Read into memory while verifying, whatever their size (the rest only if small).
DOCUMENTS = ("oci-layout", "index.json", "manifest.json", RUN_JSON, MANIFEST)
#: Tags of the original run that are not copied: MLflow sets the name itself, a parent
#: run does not exist in the new store, and envlock.image is set last, to the new image.
NOT_COPIED = ("mlflow.runName", "mlflow.parentRunId", "mlflow.rootRunId", runrecord.IMAGE)
IMPORTED_FROM = runrecord.IMPORTED_FROM
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
            if k not in NOT_COPIED and not k.startswith(runrecord.IMPORTED_PREFIX)
            and k != runrecord.ARCHIVE_SHA256}


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
