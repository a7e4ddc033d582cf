"""Images read straight from their registry, without a container engine.

``RemoteImage`` resolves a reference to one linux image manifest (choosing the platform
from an index), its config and its layers. ``read_files`` reads chosen files out of the
layers, applying each layer's whiteouts as a container runtime would, so that the
daemonless builder can learn a base image's interpreter and users, and the SBOM its OS
packages, without running anything. ``extract_rootfs`` unpacks a whole image (the base)
once per digest, for the environment's proof under an OCI runtime.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.registry import Registry
from envlock.image import oci

#: What the assembled images run on; an index is narrowed to this platform.
PLATFORM = {"os": "linux", "architecture": "amd64"}


@dataclass
class RemoteImage:
    reference: oci.Reference
    registry: Registry
    manifest_bytes: bytes
    media_type: str
    config_bytes: bytes

    @property
    def digest(self) -> str:
        return oci.sha256_digest(self.manifest_bytes)

    @property
    def pinned(self) -> str:
        return self.reference.pinned(self.digest)

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_bytes))

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.config_bytes))

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(oci.manifest_blobs(self.manifest)[1:])


def registry_for(reference: oci.Reference, auth: dict[str, str] | None = None) -> Registry:
    credentials = (auth["username"], auth["password"]) if auth and auth.get("username") \
        else None
    return Registry(reference.registry, credentials)


def open_image(reference: str, auth: dict[str, str] | None = None,
               registry: Registry | None = None) -> RemoteImage:
    """The image ``reference`` names, from its registry (a RegistryError when it cannot be
    read: unreachable, refused, or not found)."""
    try:
        ref = oci.parse_reference(qualified(reference))
    except ValueError as exc:
        raise RegistryError(f"{reference} is not an image reference ({exc})",
                            "pass NAME[:TAG] or NAME@sha256:…") from exc
    client = registry or registry_for(ref, auth)
    data, media = client.manifest(ref.repository, ref.digest or ref.tag or "latest")
    if ref.digest and oci.sha256_digest(data) != ref.digest:
        raise RegistryError(f"registry {ref.registry} returned a manifest for {reference} "
                            "whose digest differs", "check the registry; the image cannot "
                            "be trusted")
    document = json.loads(data)
    if media in oci.IMAGE_INDEXES or "manifests" in document:
        chosen = next((m for m in document.get("manifests", [])
                       if all((m.get("platform") or {}).get(k) == v
                              for k, v in PLATFORM.items())), None)
        if chosen is None:
            raise RegistryError(f"{reference} has no linux/amd64 image",
                                "pass --base-image with an image for linux/amd64")
        data, media = client.manifest(ref.repository, chosen["digest"])
        document = json.loads(data)
    ref = oci.Reference(ref.registry, ref.repository, ref.tag, None)
    try:
        config_descriptor = oci.manifest_blobs(document)[0]
    except ValueError as exc:
        raise RegistryError(f"{reference}: {exc}") from exc
    config = b"".join(client.blob(ref.repository, config_descriptor["digest"]))
    return RemoteImage(reference=ref, registry=client, manifest_bytes=data,
                       media_type=media or oci.OCI_MANIFEST, config_bytes=config)


def qualified(reference: str) -> str:
    """Docker Hub names (``python:3.11-slim``) as ``docker.io/library/python:3.11-slim``."""
    first = reference.partition("/")[0]
    if "/" in reference and oci.has_registry_host(first):
        return reference
    name = reference if "/" in reference.partition("@")[0].partition(":")[0] \
        else f"library/{reference}"
    return f"registry-1.docker.io/{name}"


@dataclass(frozen=True)
class Link:
    target: str


def layer_stream(chunks: Iterable[bytes]) -> Any:
    """A layer blob's tar stream, from the blob's chunks: gzip of one member or several
    (envlock's own layers carry wheel members as members of their own; ``tarfile``'s
    stream mode reads only the first), or a plain tar. Downloading and decompressing run
    in a thread of their own (zlib releases the GIL), beside the caller reading the tar."""
    import io

    return io.BufferedReader(_Gunzip(chunks), 1 << 20)


class _End:
    """What the producer puts last."""


class _Gunzip(io.RawIOBase):
    """The bytes of a gzip stream of any number of members (or of a plain stream),
    produced by a daemon thread into a bounded queue."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        import queue
        import threading

        self.queue: queue.Queue[bytes | BaseException | _End] = queue.Queue(maxsize=32)
        self.stopped = threading.Event()
        self.pending = memoryview(b"")
        self.ended = False
        threading.Thread(target=self._produce, args=(iter(chunks),), daemon=True,
                         name="envlock-gunzip").start()

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            first = next(chunks, b"")
            if first[:2] == b"\x1f\x8b":
                self._inflate(first, chunks)
            else:
                self._put(first)
                for chunk in chunks:
                    self._put(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put(exc)
        finally:
            self._put(_End())

    def _inflate(self, data: bytes, chunks: Iterator[bytes]) -> None:
        import zlib

        inflate, fed = zlib.decompressobj(wbits=31), False
        while data:
            if not fed:
                data = data.lstrip(b"\x00")  # zero padding after a member, as gzip allows
            if data:
                self._put(inflate.decompress(data))
                fed = True
            if inflate.eof:
                data = inflate.unused_data
                inflate, fed = zlib.decompressobj(wbits=31), False
            else:
                data = b""
            if not data:
                data = next(chunks, b"")
        if fed:
            raise EOFError("the layer ends inside a gzip member")

    def _put(self, item: bytes | BaseException | _End) -> None:
        import queue

        if isinstance(item, bytes) and not item:
            return
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:  # the reader is slower, or gone (then stopped is set)
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.ended:
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.ended = True
                raise item
            if isinstance(item, _End):
                self.ended = True
            else:
                self.pending = memoryview(item)
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count

    def close(self) -> None:
        self.stopped.set()
        super().close()


def read_files(image: RemoteImage, paths: Iterable[str], *,
               directories: Iterable[str] = ()) -> dict[str, bytes | Link]:
    """The files at ``paths`` (and every file under ``directories``) in the image's final
    filesystem: bytes for regular files, :class:`Link` for symlinks. Paths are given
    without the leading ``/``; absent files are absent from the result."""
    wanted = {p.strip("/") for p in paths}
    under = tuple(d.strip("/") + "/" for d in directories)
    found: dict[str, bytes | Link] = {}
    for descriptor in image.layers:
        stream = layer_stream(image.registry.blob(image.reference.repository,
                                                  descriptor["digest"]))
        with tarfile.open(fileobj=stream, mode="r|*") as layer:
            for member in layer:
                name = member.name.lstrip("./").rstrip("/") if member.name != "." else ""
                parent, _, base = name.rpartition("/")
                if base == ".wh..wh..opq":
                    prefix = parent + "/"
                    for key in [k for k in found if k.startswith(prefix)]:
                        del found[key]
                    continue
                if base.startswith(".wh."):
                    gone = f"{parent}/{base[4:]}" if parent else base[4:]
                    for key in [k for k in found if k == gone or k.startswith(gone + "/")]:
                        del found[key]
                    continue
                if name not in wanted and not name.startswith(under):
                    continue
                if member.issym():
                    found[name] = Link(member.linkname)
                elif member.isfile():
                    handle = layer.extractfile(member)
                    found[name] = handle.read() if handle else b""
                elif member.islnk():
                    target = member.linkname.lstrip("./")
                    if target in found:
                        found[name] = found[target]
                else:
                    found.pop(name, None)
    return found


def resolve_link(files: dict[str, bytes | Link], path: str, limit: int = 16) -> str:
    """Follow symlinks among ``files`` from ``path`` (no leading ``/``) to a final path."""
    current = path.strip("/")
    for _ in range(limit):
        entry = files.get(current)
        if not isinstance(entry, Link):
            return current
        target = entry.target
        if target.startswith("/"):
            current = target.strip("/")
        else:
            parent = current.rpartition("/")[0]
            parts: list[str] = parent.split("/") if parent else []
            for part in target.split("/"):
                if part == "..":
                    if parts:
                        parts.pop()
                elif part not in ("", "."):
                    parts.append(part)
            current = "/".join(parts)
    return current


__all__ = ["Link", "RegistryError", "RemoteImage", "open_image", "read_files",
           "resolve_link"]


def extract_rootfs(image: RemoteImage, cache: Path, mount_points: Iterable[str] = ()) -> Path:
    """The image's root file system extracted under ``cache/rootfs/<digest hex>`` (once per
    image digest, shared by every build on the host: extracted into a temporary folder
    and renamed into place under a host-wide lock), with empty ``mount_points`` made for
    what a runtime binds over it. Layers are applied in order, whiteouts included."""
    from envlock.adapters.locking import exclusive

    hexdigest = image.digest.split(":", 1)[1]
    final = cache / "rootfs" / hexdigest
    if final.is_dir():
        return _with_mount_points(final, mount_points)
    with exclusive(f"rootfs-{hexdigest}.lock"):
        if final.is_dir():
            return _with_mount_points(final, mount_points)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{hexdigest[:12]}-", dir=final.parent))
        try:
            for descriptor in image.layers:
                _apply_layer(image, descriptor["digest"], tmp)
            for point in mount_points:
                _make_dirs(tmp, point.strip("/"))
            os.chmod(tmp, 0o755)  # "/" as an image has it (mkdtemp made it 0700)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _apply_layer(image: RemoteImage, digest: str, root: Path) -> None:
    """One layer over ``root``: whiteouts remove, the rest is extracted with owners."""
    stream = layer_stream(image.registry.blob(image.reference.repository, digest))
    with tarfile.open(fileobj=stream, mode="r|*") as layer:
        for member in layer:
            name = member.name.lstrip("./").rstrip("/") if member.name != "." else ""
            parent, _, base = name.rpartition("/")
            if base == ".wh..wh..opq":
                for child in (root / parent).iterdir() if (root / parent).is_dir() else ():
                    _remove(child)
                continue
            if base.startswith(".wh."):
                _remove(root / parent / base[4:])
                continue
            if not name or ".." in name.split("/"):
                continue
            target = root / name
            if (target.is_symlink() or target.exists()) and not (member.isdir() and
                                                                  target.is_dir()):
                _remove(target)
            if hasattr(tarfile, "tar_filter"):  # refuses names outside root, clears setuid
                layer.extract(member, root, set_attrs=True, numeric_owner=True,
                              filter="tar")
            else:  # pragma: no cover - Python before 3.10.12
                layer.extract(member, root, set_attrs=True, numeric_owner=True)


def _with_mount_points(root: Path, mount_points: Iterable[str]) -> Path:
    """An extracted file system with the mount points a later build binds over it too
    (a carried interpreter's prefix): made as at extraction, racing builds tolerated."""
    for point in mount_points:
        if not (root / point.strip("/")).is_dir():
            with contextlib.suppress(FileExistsError):
                _make_dirs(root, point.strip("/"))
    return root


def _make_dirs(root: Path, relative: str) -> None:
    """``relative`` under ``root``, each new folder 0755 whatever the umask."""
    current = root
    for part in relative.split("/"):
        current = current / part
        if not current.is_dir():
            current.mkdir()
            os.chmod(current, 0o755)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
