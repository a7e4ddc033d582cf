"""Images assembled by envlock itself: canonical layers, configs and manifests, written to
the local store (``adapters.ocistore``), pushed through the registry client and, when a
Docker engine is present, loaded into it.

Every envlock image is made here, whichever builder runs, so one lock on one base gives
one environment-image digest: no engine writes layer bytes or re-compresses them, and
the registry receives exactly the blobs whose digests were computed. Base layers are
never downloaded to build: the manifest refers to them, and pushing mounts them from the
base's repository (or copies them, blob by blob, when the registry cannot mount).
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock import progress
from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.imagefs import RemoteImage, registry_for
from envlock.adapters.ocistore import Store
from envlock.adapters.registry import Chunks, Registry, Sized
from envlock.image import imageconfig, oci
from envlock.image.layer import Layer, LayerWriter


@dataclass
class Assembled:
    """One image: its manifest and config bytes, and where each of its blobs can be read."""

    name: str  # repository:tag
    manifest_bytes: bytes
    config_bytes: bytes
    #: layer digest -> (registry host, repository) for layers that live only in a registry
    remote: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return oci.sha256_digest(self.manifest_bytes)

    @property
    def image_id(self) -> str:
        """The config digest: what Docker calls the image id."""
        return oci.sha256_digest(self.config_bytes)

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.config_bytes))

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(json.loads(self.manifest_bytes)["layers"])

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})


def from_base(base: RemoteImage, name: str) -> Assembled:
    """The base image as the parent of an assembled one (its layers stay in its registry)."""
    layers = [imageconfig.oci_descriptor(d) for d in base.layers]
    manifest = imageconfig.manifest(base.config_bytes, layers)
    remote = {d["digest"]: (base.reference.registry, base.reference.repository)
              for d in layers}
    return Assembled(name=name, manifest_bytes=manifest, config_bytes=base.config_bytes,
                     remote=remote)


def child(parent: Assembled, layer: Layer, changes: tuple[str, ...] | list[str], name: str,
          store: Store, *, created: str, created_by: str) -> Assembled:
    """``parent`` plus ``layer`` (already in ``store``) and the recipe's changes."""
    config = imageconfig.child_config(parent.config, changes, layer.diff_id,
                                      created=created, created_by=created_by)
    config_bytes = imageconfig.config_bytes(config)
    store.put(config_bytes)
    manifest = imageconfig.manifest(config_bytes, [*parent.layers, layer.descriptor()])
    store.put(manifest)
    return Assembled(name=name, manifest_bytes=manifest, config_bytes=config_bytes,
                     remote=dict(parent.remote))


def write_layer(store: Store, fill: Any, label: str = "writing the layer") -> Layer:
    """A layer written by ``fill(writer)`` straight into the store, its bytes reported as
    a transfer (``label``: done of the files' total, rate, time left)."""
    with store.writing() as (handle, named):
        writer = LayerWriter(handle)
        fill(writer)
        with progress.transfer(label, writer.content_size()) as moving:
            layer = writer.close(moving.advance)
        named.append(layer.digest)
    return layer


def code_layer(store: Store, code_tar: bytes) -> Layer:
    """The code context's tar (``workspace/…``) as a canonical layer."""
    import io

    def fill(writer: LayerWriter) -> None:
        with tarfile.open(fileobj=io.BytesIO(code_tar)) as archive:
            for member in archive.getmembers():
                if member.isdir():
                    writer.add_dir(member.name, member.mode, member.uid, member.gid)
                elif member.issym():
                    info = tarfile.TarInfo(member.name)
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, member.linkname, \
                        0o777
                    writer._put(info, None, member.uid, member.gid)
                elif member.isfile():
                    handle = archive.extractfile(member)
                    writer.add_bytes(member.name, handle.read() if handle else b"",
                                     member.mode, member.uid, member.gid)

    return write_layer(store, fill)


def stored(store: Store, name: str, digest: str) -> Assembled | None:
    """An image envlock assembled before (its manifest and config in the store)."""
    try:
        manifest = store.read(digest)
        document = json.loads(manifest)
        config = store.read(document["config"]["digest"])
        remote = json.loads(_remote_key(store, digest).read_text())
    except (OSError, ValueError, KeyError):
        return None
    return Assembled(name=name, manifest_bytes=manifest, config_bytes=config,
                     remote={k: (v[0], v[1]) for k, v in remote.items()})


def remember(store: Store, image: Assembled) -> None:
    """Name ``image`` in the store, with where its registry-only layers live."""
    path = _remote_key(store, image.digest)
    path.write_text(json.dumps(image.remote, sort_keys=True))
    store.tag(image.name, image.digest)


def _remote_key(store: Store, digest: str) -> Path:
    return store.root / "refs" / (digest.split(":", 1)[1] + ".remote.json")


# ---------------------------------------------------------------- push

@dataclass
class PushCount:
    blobs_pushed: int = 0
    blobs_mounted: int = 0
    blobs_copied: int = 0
    blobs_existing: int = 0
    bytes_pushed: int = 0


def push(image: Assembled, target: oci.Reference, tag: str, store: Store, registry: Registry,
         count: PushCount, connect: Any = None) -> str:
    """Every blob of ``image`` into ``target``'s repository, then its manifest under
    ``tag``; returns the manifest digest the registry confirmed. ``connect``: host ->
    registry client, for layers copied from another registry."""
    sources: dict[str, Any] = {}
    repository = target.repository
    config_digest = json.loads(image.manifest_bytes)["config"]["digest"]
    config = {"digest": config_digest, "size": len(image.config_bytes)}
    for descriptor in [*image.layers, config]:
        digest, size = descriptor["digest"], int(descriptor["size"])
        is_layer = descriptor is not config  # the counts are of layers; bytes of all blobs
        if registry.has_blob(repository, digest):
            count.blobs_existing += is_layer
            continue
        if store.has(digest):
            with store.path(digest).open("rb") as handle:
                registry.push_blob(repository, digest, size, Sized(progress.counting(
                    handle, f"pushing {digest[:19]}", size), size))
            count.blobs_pushed += is_layer
            count.bytes_pushed += size
            continue
        where = image.remote.get(digest)
        if where is None:
            raise RegistryError(f"blob {digest[:19]} of {image.name} is neither in the local "
                                "store nor in a known registry",
                                "build again with --no-cache")
        host, from_repository = where
        if host == target.registry and registry.mount_blob(repository, digest,
                                                           from_repository):
            count.blobs_mounted += 1
            continue
        source = sources.get(host)
        if source is None:
            source = sources[host] = registry if host == target.registry else \
                connect(host) if connect else \
                registry_for(oci.Reference(host, from_repository), None)
        registry.push_blob(repository, digest, size,
                           Sized(progress.counting(Chunks(source.blob(from_repository, digest)),
                                                   f"copying {digest[:19]} from {host}", size),
                                 size))
        count.blobs_copied += 1
    pushed = registry.put_manifest(repository, tag, image.manifest_bytes, oci.OCI_MANIFEST)
    if pushed != image.digest or not registry.has_manifest(repository, image.digest):
        raise RegistryError(f"{target.name}:{tag} was pushed but registry {target.registry} "
                            f"does not hold {image.digest[:19]}…", "retry the push")
    return image.digest


# ---------------------------------------------------------------- load into an engine

def load(engine: Any, image: Assembled, store: Store, tags: list[str]) -> None:
    """``docker load`` of ``image``: its config and its top layer. The caller has put its
    parent in the engine (the base pulled, or the environment loaded), and the engine skips
    the layers it has by their chain id: a code image's load never copies the environment
    layer again."""
    with tempfile.TemporaryDirectory(prefix="envlock-load-") as tmp:
        archive = Path(tmp) / "image.tar"
        config_digest = json.loads(image.manifest_bytes)["config"]["digest"]
        layers = image.layers
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            entries = [{"Config": oci.blob_path(config_digest), "RepoTags": tags,
                        "Layers": [oci.blob_path(d["digest"]) for d in layers]}]
            _add_bytes(tar, "manifest.json", oci.canonical_json(entries))
            _add_bytes(tar, oci.blob_path(config_digest), image.config_bytes)
            top = layers[-1]["digest"]
            tar.add(str(store.path(top)), arcname=oci.blob_path(top))
        with archive.open("rb") as handle:
            engine.load(handle)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def iso(seconds: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value.isdigit() else None
