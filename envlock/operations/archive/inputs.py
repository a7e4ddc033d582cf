"""The run's copied inputs in an archive, so that an imported run replays with no registry.

Export writes the inputs' OCI artifact (the run's ``envlock.inputs`` tag) as
``inputs/manifest.json`` and each blob as ``inputs/sha256/<hex>``, from the registry or
from this host's input cache; MANIFEST.json lists them with their sha256 like every file.
Import checks each blob's name against its content, puts the blobs in this host's input
cache (``$ENVLOCK_CACHE/inputs/blobs``, where a replay looks before any registry) and,
with ``--registry``, pushes them and the artifact beside the image, re-pinning the run's
``envlock.inputs`` tag there.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from envlock.image import oci
from envlock.operations.archive.format import ArchiveError, Contents

PREFIX = "inputs/"
ARTIFACT = "inputs/manifest.json"


def blob_name(digest: str) -> str:
    return f"{PREFIX}sha256/{digest.split(':', 1)[1]}"


def export_inputs(writer: Any, tags: dict[str, str], lockfile: Path | None,
                  credentials: tuple[str, str] | None, report: Any) -> int:
    """Write the run's copied inputs (see the module docs); returns how many blobs. The
    artifact is rebuilt from the lock (the same bytes capture pushed, checked against the
    tag's digest); each blob comes from this host's cache, else from the registry."""
    from envlock.model.lockfile import load
    from envlock.operations.inputs import TAG, artifact_manifest, blob_root

    reference = tags.get(TAG)
    if not reference or lockfile is None:
        return 0
    ref = oci.parse_reference(reference)
    blobs = [b for i in load(lockfile).inputs if i.carry == "copy" for b in i.blobs()]
    data = artifact_manifest(blobs)
    if oci.sha256_digest(data) != ref.digest:
        raise ArchiveError(f"the run's inputs {reference} are not the copies its lock names",
                           "capture the run again")
    layers = json.loads(data)["layers"]
    report.step(f"copying {len(layers)} input blob(s)")
    from envlock.adapters.registry import Chunks, Registry

    registry = None
    for layer in layers:
        digest, size = layer["digest"], int(layer["size"])
        cached = blob_root() / digest.split(":", 1)[1]
        if cached.is_file():
            with cached.open("rb") as handle:
                writer.add_stream(blob_name(digest), size, handle, digest)
            continue
        registry = registry or Registry(ref.registry, credentials)
        writer.add_stream(blob_name(digest), size,
                          Chunks(registry.blob(ref.repository, digest)), digest)
    writer.add_bytes(ARTIFACT, data)
    return len(layers)


def check(contents: Contents) -> list[dict[str, Any]]:
    """The archive's input blobs (the artifact's layers), each present under its name and
    named by its content's sha256; none when the run had no copied inputs."""
    if ARTIFACT not in contents.members:
        return []
    layers = json.loads(contents.read(ARTIFACT)).get("layers") or []
    for layer in layers:
        member = contents.members.get(blob_name(layer["digest"]))
        if member is None or member.size != layer["size"]:
            raise ArchiveError(f"input blob {layer['digest'][:19]}… is missing from the archive "
                               "or has the wrong size", "export the run again")
        if member.sha256 != layer["digest"]:
            raise ArchiveError(f"input blob {layer['digest'][:19]}… does not match its content "
                               f"({member.sha256[:19]}…): the archive was modified",
                               "export the run again")
    return layers


def import_inputs(contents: Contents, target: Any, credentials: tuple[str, str] | None
                  ) -> str | None:
    """Cache the archive's input blobs on this host; with ``target`` (the registry
    repository of the image), push them and their artifact. Returns the new
    ``envlock.inputs`` reference (None: keep the run's)."""
    layers = check(contents)
    for layer in layers:
        _cache(contents, layer["digest"])
    if not layers or target is None:
        return None
    from envlock.adapters.registry import Registry, Sized

    registry = Registry(target.registry, credentials)
    for layer in layers:
        if not registry.has_blob(target.repository, layer["digest"]):
            with contents.open(blob_name(layer["digest"])) as blob:
                registry.push_blob(target.repository, layer["digest"], layer["size"],
                                   Sized(blob, layer["size"]))
    data = contents.read(ARTIFACT)
    config = json.loads(data)["config"]
    if not registry.has_blob(target.repository, config["digest"]):
        from envlock.operations.inputs import EMPTY_CONFIG, _bytes

        registry.push_blob(target.repository, config["digest"], config["size"],
                           Sized(_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG)))
    tag = "inputs-" + oci.sha256_digest(data).split(":", 1)[1][:16]
    return str(target.pinned(registry.put_manifest(target.repository, tag, data,
                                                   oci.OCI_MANIFEST)))


def _cache(contents: Contents, digest: str) -> Path:
    from envlock.operations.inputs import blob_root

    target = blob_root() / digest.split(":", 1)[1]
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, \
            contents.open(blob_name(digest)) as data:
        for chunk in data:
            tmp.write(chunk)
    os.chmod(tmp.name, 0o444)
    os.replace(tmp.name, target)
    return target
