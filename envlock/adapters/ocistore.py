"""envlock's local image store: the blobs it assembled, content-addressed on disk.

An OCI image layout (``oci-layout``, ``blobs/sha256/…``) under the envlock cache
(``$ENVLOCK_CACHE/oci``, default ``~/.cache/envlock/oci``), plus ``refs/``: one file per
``repository:tag`` holding a manifest digest. Every write goes through a temporary file
and an atomic rename, so concurrent builds (several captures at once) never see half a
blob, and a blob's name is always the sha256 of its bytes. Base image layers are not
copied here: manifests refer to them by digest in their registry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from envlock.image import oci


def default_root() -> Path:
    cache = Path(os.environ.get("ENVLOCK_CACHE", Path.home() / ".cache" / "envlock"))
    return cache / "oci"


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "refs").mkdir(exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._atomic_write(layout, oci.oci_layout())

    # ---------------------------------------------------------------- blobs

    def path(self, digest: str) -> Path:
        return self.root / oci.blob_path(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put(self, data: bytes) -> str:
        digest = oci.sha256_digest(data)
        if not self.has(digest):
            self._atomic_write(self.path(digest), data)
        return digest

    @contextmanager
    def writing(self) -> Iterator[tuple[BinaryIO, list[str]]]:
        """A temporary file to write a blob into; append its digest (computed while
        writing) to the list before the block ends and the file becomes that blob."""
        handle = tempfile.NamedTemporaryFile(dir=self.root / "blobs", prefix=".tmp-",  # noqa: SIM115
                                             delete=False)
        named: list[str] = []
        try:
            with handle:
                yield handle, named  # type: ignore[misc]
            if named:
                os.replace(handle.name, self.path(named[0]))
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)

    # ---------------------------------------------------------------- names

    def _ref(self, name: str) -> Path:
        return self.root / "refs" / hashlib.sha256(name.encode()).hexdigest()

    def tag(self, name: str, manifest_digest: str) -> None:
        self._atomic_write(self._ref(name), f"{manifest_digest}\n{name}\n".encode())

    def lookup(self, name: str) -> str | None:
        """The manifest digest ``name`` (``repository:tag``) points at, when every blob it
        names that envlock made is still here."""
        try:
            digest = self._ref(name).read_text().split("\n", 1)[0]
        except OSError:
            return None
        return digest if oci.is_digest(digest) and self.has(digest) else None

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

