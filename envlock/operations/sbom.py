"""``envlock sbom`` and capture's SBOM: a CycloneDX or SPDX document of a lock or a
captured run, with its base image's OS packages read from the registry.

The base image's package databases (dpkg, distroless ``status.d``, apk) and its
``os-release`` are read out of its layers through the registry
(:mod:`envlock.adapters.imagefs`), no container; a base is immutable by digest, so
what was read is cached (``$ENVLOCK_CACHE/sbom``). A base that cannot be read leaves
the OS packages out with a warning: the rest of the SBOM stands on the lock alone.

Capture attaches the document twice: as the run artifact ``envlock/sbom.cdx.json``,
and, when the image is in a registry, as an OCI artifact whose ``subject`` is the
image manifest (found through the referrers API where the registry serves it, and
through the tag ``sha256-<hex>.sbom`` — the referrers tag schema's fallback — where
it does not). Pushing comes before any tag is set, and a push that fails is a warning:
the run's ``envlock.sbom`` tag names only an artifact that exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import EnvlockError, UsageError
from envlock.image import oci
from envlock.model import ospkgs, runrecord
from envlock.model.lockfile import Lock
from envlock.model.sbom import SbomInput, created_at
from envlock.model.sbomdoc import MEDIA_TYPES, render

ARTIFACT = runrecord.SBOM_ARTIFACT  # under the run's envlock/ artifacts
ARTIFACT_TYPE = MEDIA_TYPES["cyclonedx-json"]
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
#: host -> registry client (default: ``adapters.registry.Registry``), as build takes it.
Registries = Callable[[str], Any]
Auth = dict[str, str]  # {"username": …, "password": …}


@dataclass
class SbomResult:
    format: str
    document: bytes
    output: str | None = None
    image: str | None = None
    base: str | None = None
    run_id: str | None = None
    python_packages: int = 0
    os_packages: int | None = None
    referrer: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, include_document: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "document"}
        if include_document:
            out["document"] = json.loads(self.document)
        return out


# ---------------------------------------------------------------- the base's OS packages

def _cache_file(pinned: str) -> Path | None:
    """``$ENVLOCK_CACHE/sbom/<hex>.json``: what was read from the base with that digest."""
    digest = pinned.rpartition("@")[2]
    if not oci.is_digest(digest):
        return None
    root = Path(os.environ.get("ENVLOCK_CACHE", Path.home() / ".cache" / "envlock"))
    return root / "sbom" / f"{digest.split(':', 1)[1]}.json"


def _read_base(base: str, auth: Auth | None, registries: Registries | None
               ) -> tuple[str, dict[str, bytes]]:
    """``base`` pinned by digest, and its package databases and os-release, read through
    its registry."""
    from envlock.adapters import imagefs

    host = base.split("/", 1)[0]
    image = imagefs.open_image(base, auth, registry=registries(host)
                               if registries and "/" in base else None)
    entries = imagefs.read_files(
        image, [p for p in ospkgs.PATHS if not p.endswith("/")],
        directories=[p for p in ospkgs.PATHS if p.endswith("/")])
    files = {}
    for path in entries:
        content = entries.get(imagefs.resolve_link(entries, path))
        if isinstance(content, bytes):
            files[path] = content
    return (base if "@sha256:" in base else image.pinned), files


def base_inventory(base: str | None, auth: Auth | None = None,
                   registries: Registries | None = None
                   ) -> tuple[str | None, ospkgs.OsInventory | None, list[str]]:
    """The base image ``base`` pinned by digest (a tag is resolved through its registry),
    its OS packages (cached by digest), and warnings."""
    if not base:
        return None, None, ["no base image is known: the SBOM lists no OS packages (pass "
                            "--base-image NAME@sha256:…)"]
    if "/" not in base and base.startswith("sha256:"):
        return base, None, [f"base image {base} is an engine's image ID, not in a registry: "
                            "its OS packages are left out"]
    found = _cached(_cache_file(base))
    if found is None:
        try:
            base, files = _read_base(base, auth, registries)
        except EnvlockError as exc:
            return base, None, [f"the OS packages of base image {base} were not read: "
                                f"{exc.message}"]
        found = ospkgs.inventory(files)
        _store(_cache_file(base), found)
    warnings = [] if found.databases else [
        f"base image {base} has no dpkg or apk package database: no OS packages listed"]
    return base, found, warnings


def _cached(path: Path | None) -> ospkgs.OsInventory | None:
    if path is None or not path.is_file():
        return None
    try:
        return ospkgs.OsInventory.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # a damaged cache entry: read the base again


def _store(path: Path | None, found: ospkgs.OsInventory) -> None:
    from envlock.model.atomic import atomic_file

    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, 0o644) as handle:
            handle.write(json.dumps(found.to_dict(), sort_keys=True).encode())
    except OSError:
        pass  # a read-only cache only costs the next SBOM a re-read


# ---------------------------------------------------------------- the document

@dataclass(frozen=True)
class Subject:
    """What an SBOM describes beside the lock, when known: the image, its base, the run
    and when it started."""

    image: str | None = None
    base: str | None = None
    run_id: str | None = None
    started: str | None = None


def build(lock: Lock, fmt: str = "cyclonedx-json", subject: Subject | None = None, *,
          auth: Auth | None = None, registries: Registries | None = None,
          want_base: bool = True) -> SbomResult:
    """The SBOM of ``lock`` (and of the image and base, when known). ``want_base``: warn
    when no base is known (capture --no-build has none, by design)."""
    from envlock.model.sbomdoc import FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"unknown SBOM format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    subject = subject or Subject()
    image, run_id = subject.image, subject.run_id
    base, inventory, warnings = base_inventory(subject.base, auth, registries) \
        if subject.base or want_base else (None, None, [])
    source = SbomInput(lock=lock, image=image, base=base, os=inventory,
                       created=created_at(subject.started), run_id=run_id)
    try:
        document = render(source, fmt)
    except ValueError as exc:  # a document its own library does not accept: envlock's bug
        raise EnvlockError(f"cannot write the {fmt} SBOM: {exc}", "report this with the "
                           "lockfile; --format cyclonedx-json may still work") from exc
    return SbomResult(format=fmt, document=document, image=image, base=base, run_id=run_id,
                      python_packages=len(lock.packages),
                      os_packages=len(inventory.packages) if inventory else None,
                      warnings=warnings)


def for_target(target: str, fmt: str, *, image: str | None = None, base: str | None = None,
               auth: Auth | None = None) -> SbomResult:
    """``envlock sbom LOCK|RUN_ID``: a run gives its image, base and start time."""
    from envlock.operations import targets

    path = Path(target)
    if path.exists() or not targets._RUN_ID.fullmatch(target):
        from envlock import config
        from envlock.model import lockfile

        lock = lockfile.load(path)
        base = base or config.load(Path(".")).base_image_for(lock.python["version"], None)
        return build(lock, fmt, Subject(image=image, base=base), auth=auth)
    lock, run = targets.load_run(target)
    return build(lock, fmt, Subject(image=image or run.tags.get(runrecord.IMAGE),
                                    base=base or run.tags.get(runrecord.BASE_IMAGE),
                                    run_id=run.run_id, started=run.started), auth=auth)


# ---------------------------------------------------------------- attached to the image

def referrer_manifest(subject: tuple[str, str, int], document: bytes,
                      created: str | None) -> bytes:
    """An OCI image manifest (image-spec 1.1 artifact) carrying ``document`` with
    ``subject`` = the image's manifest descriptor (media type, digest, size)."""
    media, digest, size = subject
    manifest: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA, "digest": oci.sha256_digest(EMPTY_CONFIG),
                   "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": ARTIFACT_TYPE, "digest": oci.sha256_digest(document),
                    "size": len(document),
                    "annotations": {"org.opencontainers.image.title": ARTIFACT}}],
        "subject": {"mediaType": media, "digest": digest, "size": size},
    }
    if created:
        manifest["annotations"] = {"org.opencontainers.image.created": created}
    return oci.canonical_json(manifest)


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for an image digest: ``sha256-<hex>`` (+ ``.sbom``)."""
    return digest.replace(":", "-") + ".sbom"


class _Blob:
    def __init__(self, data: bytes) -> None:
        import io

        self.data, self.stream = data, io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)

    def __len__(self) -> int:
        return len(self.data)


def push_referrer(image: str, document: bytes, created: str | None,
                  auth: Auth | None = None, registries: Registries | None = None) -> str:
    """Push ``document`` as an OCI artifact referring to ``image`` (HOST/REPO@sha256:…),
    tagged ``sha256-<hex>.sbom``; returns ``HOST/REPO@sha256:<artifact manifest>``."""
    return push_artifact(image, lambda subject: referrer_manifest(subject, document, created),
                         (EMPTY_CONFIG, document), fallback_tag, auth, registries)


def push_artifact(image: str, manifest_for: Callable[[tuple[str, str, int]], bytes],
                  blobs: tuple[bytes, ...], tag_for: Callable[[str], str],
                  auth: Auth | None = None, registries: Registries | None = None) -> str:
    """Push an artifact whose ``subject`` is ``image``: its ``blobs``, then the manifest
    ``manifest_for(subject descriptor)`` tagged ``tag_for(image digest)``; where the
    registry has no referrers API, the artifact is also listed in the referrers tag
    schema's ``sha256-<hex>`` index. Returns ``HOST/REPO@sha256:<artifact manifest>``."""
    from envlock.adapters.registry import Registry

    ref = oci.parse_reference(image)
    if not ref.digest:
        raise UsageError(f"{image} is not pinned to a digest")
    registry = registries(ref.registry) if registries else Registry(
        ref.registry, (auth["username"], auth["password"]) if auth else None)
    data, media = registry.manifest(ref.repository, ref.digest)
    manifest = manifest_for((media, ref.digest, len(data)))
    for blob in blobs:
        digest = oci.sha256_digest(blob)
        if not registry.has_blob(ref.repository, digest):
            registry.push_blob(ref.repository, digest, len(blob), _Blob(blob))
    pushed = registry.put_manifest(ref.repository, tag_for(ref.digest), manifest,
                                   oci.OCI_MANIFEST)
    _list_referrer(registry, ref.repository, ref.digest, manifest)
    return ref.pinned(pushed)


def _list_referrer(registry: Any, repository: str, digest: str, manifest: bytes) -> None:
    """The referrers tag schema: without a referrers API the ``sha256-<hex>`` index lists
    every artifact of the image (a registry with the API indexes ``subject`` itself)."""
    from envlock.model.provenance import descriptor, index_tag, referrers_index

    if registry.referrers(repository, digest) is not None:
        return
    existing = registry.find_manifest(repository, index_tag(digest))
    registry.put_manifest(repository, index_tag(digest),
                          referrers_index(existing[0] if existing else None,
                                          descriptor(manifest)), oci.OCI_INDEX)


def same_registry_auth(auth: Auth | None, image: str | None,
                       base: str | None) -> Auth | None:
    """The push registry's credentials, for reading the base only from that same registry
    (never sent to another host; there the Docker config's apply)."""
    if not auth or not image or not base or "/" not in base:
        return None
    return auth if image.split("/", 1)[0] == base.split("/", 1)[0] else None


@dataclass
class Attached:
    """Capture's SBOM: the document for the run's artifacts, where it was pushed."""

    document: bytes
    referrer: str | None
    os_packages: int | None
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": f"envlock/{ARTIFACT}", "referrer": self.referrer,
                "os_packages": self.os_packages, "warnings": self.warnings}


def for_capture(lock: Lock, run_id: str, started: str | None, image: str | None,
                base: str | None, auth: Auth | None = None,
                registries: Registries | None = None) -> Attached:
    """Capture's hook: the CycloneDX SBOM of the run, pushed next to its image when that
    is in a registry. Never raises for the registry: a failed push is a warning."""
    result = build(lock, "cyclonedx-json", Subject(image, base, run_id, started),
                   auth=same_registry_auth(auth, image, base), registries=registries,
                   want_base=image is not None)
    referrer = None
    if image and "@sha256:" in image:
        try:
            referrer = push_referrer(image, result.document, started, auth, registries)
        except EnvlockError as exc:
            result.warnings.append(f"the SBOM was not attached to the image in its registry: "
                                   f"{exc.message} (it is still a run artifact)")
    return Attached(document=result.document, referrer=referrer,
                    os_packages=result.os_packages, warnings=result.warnings)
