"""The inputs image of a Kubernetes replay: the run's image plus one layer of its copied
inputs, pushed to the image's repository and pinned by digest.

A cluster gets bytes only from images it pulls (its nodes are not this host, and pods
cannot reach a registry on this host's loopback that the node's containerd can), so a
Job's inputs travel as an image. The layer holds each copied input at
``.envlock/inputs/<sha256>`` — a file input as its bytes, a directory input (named by its
manifest's sha256) as the tree of its files — written by the canonical layer writer
(:mod:`envlock.image.layer`: sorted entries, fixed times and owners): the same inputs
give the same layer, config and manifest digest. The config and manifest are the run
image's plus that layer (:func:`envlock.operations.build.assemble.child`), so pushing
sends the layer and a config only: the base layers are in the repository already. The
bytes come from the inputs' OCI artifact, pulled into ``$ENVLOCK_CACHE/inputs/blobs``
and verified by hash, as a local replay pulls them (:func:`envlock.operations.inputs.pull`).
A second replay of the same inputs finds its derived image in the local store's names and
in the registry, and writes and pushes nothing.

The Job (:func:`envlock.model.kubejob.job_manifest`) runs this image only in an init
container that copies the entries into a volume; the experiment runs the run's own image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envlock.adapters.imagefs import open_image
from envlock.adapters.ocistore import Store
from envlock.adapters.registry import Registry
from envlock.image import oci
from envlock.image.layer import EPOCH, LayerWriter
from envlock.model import kubejob
from envlock.model.inputs import Input, human_size
from envlock.operations import inputs as carried
from envlock.operations.build import assemble

#: The layer's format: part of the key a derived image is remembered by.
FORMAT = "envlock-inputs-layer/1"
LAYER_ROOT = kubejob.INPUTS_ROOT.strip("/")


@dataclass(frozen=True)
class Derived:
    """The inputs image: ``image`` (HOST/REPO@sha256:…), what its push sent, and whether
    it was there already (nothing written or pushed)."""

    image: str
    pushed_bytes: int = 0
    reused: bool = False


def key(image: str, copied: Sequence[Input]) -> str:
    """What a derived image depends on: the run's image and each copied input's sha256
    and shape (a directory's sha256 covers its files' paths, sizes and hashes)."""
    lines = sorted({f"{i.sha256} {'tree' if i.is_tree else 'file'}" for i in copied})
    return hashlib.sha256("\n".join([FORMAT, image, *lines]).encode()).hexdigest()


def describe(image: str, copied: Sequence[Input]) -> str:
    """What --dry-run says would be derived (nothing is pulled, written or pushed)."""
    size = sum(i.size for i in {i.sha256: i for i in copied}.values())
    return (f"<derived at submit: {image} + one layer of {len(copied)} copied input(s), "
            f"{human_size(size)}>")


def fill(writer: LayerWriter, copied: Sequence[Input], blobs: dict[str, Any]) -> None:
    """The layer's entries: ``.envlock/inputs/<sha256>`` per input, from the cached blobs."""
    for folder in (".envlock", LAYER_ROOT):
        writer.add_dir(folder)
    for item in copied:
        top = f"{LAYER_ROOT}/{item.sha256}"
        if not item.is_tree:
            writer.add_path(top, blobs[item.sha256])
            continue
        writer.add_dir(top)
        for entry in item.files:
            parts = entry.path.split("/")
            for depth in range(1, len(parts)):
                writer.add_dir(f"{top}/{'/'.join(parts[:depth])}")
            writer.add_path(f"{top}/{entry.path}", blobs[entry.sha256])


def derive(image: str, copied: Sequence[Input], artifact: str | None, *,
           credentials: tuple[str, str] | None = None, store: Store | None = None,
           registry: Any = None) -> Derived:
    """The inputs image of ``image`` (HOST/REPO@sha256:…) for ``copied``, pushed to its
    repository (see the module docs). ``artifact``: the run's inputs artifact (its
    ``envlock.inputs`` tag), where the bytes are pulled from when not cached."""
    ref = oci.parse_reference(image)
    registry = registry or Registry(ref.registry, credentials)
    store = store or Store()
    name = f"{ref.name}:envlock-inputs-{key(image, copied)[:32]}"
    known = store.lookup(name)
    if known and registry.has_manifest(ref.repository, known):
        return Derived(ref.pinned(known), reused=True)
    if not artifact:
        raise carried.InputsError(
            f"the run's copied inputs ({', '.join(i.path for i in copied[:3])}) have no "
            f"{carried.TAG} tag: their capture did not finish", "capture the run again")
    blobs = carried.pull(copied, artifact, lambda host: registry if host == ref.registry
                         else carried.registry_client(host, None))
    layer = assemble.write_layer(store, lambda writer: fill(writer, copied, blobs),
                                 "writing the inputs layer")
    base = open_image(image, registry=registry)
    parent = assemble.from_base(base, name)
    created = str(base.config.get("created") or assemble.iso(EPOCH))
    derived = assemble.child(parent, layer, [], name, store, created=created,
                             created_by=f"envlock: {len(copied)} copied input(s) of the run "
                                        f"under {kubejob.INPUTS_ROOT}")
    count = assemble.PushCount()
    tag = f"envlock-inputs-{derived.digest.split(':', 1)[1][:16]}"
    digest = assemble.push(derived, ref, tag, store, registry, count)
    assemble.remember(store, derived)
    return Derived(ref.pinned(digest), pushed_bytes=count.bytes_pushed)
