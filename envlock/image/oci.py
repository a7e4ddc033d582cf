"""Pure: OCI image references, digests, manifests and image layouts.

``parse_reference`` is envlock's one image-reference parser. The layout helpers build
the files of an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``;
image-spec v1.1 "image-layout") and the docker-archive ``manifest.json`` that
``docker load`` reads next to them (Docker ≥ 25 writes the same dual layout). The
registry client that moves them is :mod:`envlock.adapters.registry`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
IMAGE_INDEXES = (OCI_INDEX, DOCKER_LIST)
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Upload(Protocol):
    """A blob to upload: readable, with a length (requests then sends Content-Length)."""

    def read(self, n: int = -1) -> bytes: ...

    def __len__(self) -> int: ...


# ---------------------------------------------------------------- digests and names

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def blob_path(digest: str) -> str:
    """``sha256:<hex>`` -> ``blobs/sha256/<hex>`` (only well-formed sha256 digests)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return "blobs/sha256/" + digest.split(":", 1)[1]


def digest_of_path(path: str) -> str | None:
    """``blobs/sha256/<hex>`` -> ``sha256:<hex>``; None for any other path."""
    head, _, hexpart = path.rpartition("/")
    digest = f"sha256:{hexpart}"
    return digest if head == "blobs/sha256" and is_digest(digest) else None


@dataclass(frozen=True)
class Reference:
    """``HOST[:PORT]/REPO[:TAG][@sha256:…]`` split into its parts."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"


#: Docker's registry for names without a host part (``python:3.11``, ``team/proj``).
DEFAULT_REGISTRY = "docker.io"


def has_registry_host(first: str) -> bool:
    """Docker's rule: a name's first path part is a registry host when it has a ``.`` or
    a ``:`` (a port), or is ``localhost``."""
    return "." in first or ":" in first or first == "localhost"


def parse_reference(reference: str, *, require_registry: bool = True) -> Reference:
    """envlock's one image-reference parser: ``[HOST[:PORT]/]REPO[:TAG][@sha256:…]``.

    With ``require_registry`` (references envlock pushes to or pulls from) the host part
    is required and the name checked; without it (names an engine holds), a name with no
    host belongs to ``docker.io`` and is taken as it is."""
    name, _, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    if slash and has_registry_host(first):
        registry, path = first, rest
    elif require_registry:
        raise ValueError(f"{reference!r} does not name a registry (HOST[:PORT]/REPO)")
    else:
        registry, path = DEFAULT_REGISTRY, name
    repository, tag = path, None
    head, colon, tail = path.rpartition(":")
    if colon and "/" not in tail:
        repository, tag = head, tail
    if require_registry and not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"{repository!r} is not a valid repository name (lowercase letters, "
                         "digits, '.', '_', '-' and '/')")
    if require_registry and digest and not is_digest(digest):
        raise ValueError(f"{digest!r} is not a sha256 digest")
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest or None)


# ---------------------------------------------------------------- layout documents

def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def layer_media_type(head: bytes) -> str:
    """The OCI layer type for a layer blob that starts with ``head`` (compression sniffed)."""
    if head.startswith(b"\x1f\x8b"):
        return OCI_LAYER + "+gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER + "+zstd"
    return OCI_LAYER


def image_manifest(config: bytes, layers: list[tuple[str, int, str]]) -> bytes:
    """An OCI image manifest for a config blob and ``(digest, size, media type)`` layers."""
    document = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": media, "digest": digest, "size": size}
                   for digest, size, media in layers],
    }
    return canonical_json(document)


def manifest_blobs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The config and layer descriptors of a single-image manifest, validated."""
    media = manifest.get("mediaType")
    if media in IMAGE_INDEXES or "manifests" in manifest:
        raise ValueError("a multi-platform image index, not a single image manifest")
    if manifest.get("schemaVersion") != 2 or media not in (*IMAGE_MANIFESTS, None):
        raise ValueError(f"unsupported manifest (schemaVersion {manifest.get('schemaVersion')},"
                         f" mediaType {media})")
    descriptors = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    for descriptor in descriptors:
        if not is_digest(descriptor.get("digest")) or not isinstance(descriptor.get("size"),
                                                                     int):
            raise ValueError(f"malformed descriptor {descriptor!r}")
    return descriptors


def oci_layout() -> bytes:
    return canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def index_json(media_type: str, digest: str, size: int, name: str | None) -> bytes:
    """``index.json`` of a layout holding one image (named as ``docker save`` names it)."""
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if name:
        descriptor["annotations"] = {CONTAINERD_NAME: name,
                                     REF_NAME: name.rpartition(":")[2]}
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [descriptor]})


def docker_manifest_json(manifest: dict[str, Any], repo_tags: list[str]) -> bytes:
    """The docker-archive ``manifest.json`` pointing at the layout's blobs (``docker load``
    decompresses gzip layers itself)."""
    config, *layers = manifest_blobs(manifest)
    return canonical_json([{"Config": blob_path(config["digest"]), "RepoTags": repo_tags,
                            "Layers": [blob_path(layer["digest"]) for layer in layers]}])
