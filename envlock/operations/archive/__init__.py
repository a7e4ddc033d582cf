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

from envlock.operations.archive.export import export
from envlock.operations.archive.format import (
    DOCUMENTS,
    IMPORTED_FROM,
    MANIFEST,
    META_DIR,
    NOT_COPIED,
    RUN_JSON,
    RUN_SCHEMA,
    SCHEMA,
    ArchiveError,
    Contents,
    ExportResult,
    ImageRecord,
    ImportResult,
    Member,
    build_manifest,
    check_contents,
    portable_record,
    safe_name,
    tags_to_copy,
)
from envlock.operations.archive.importing import import_archive
from envlock.operations.archive.verify import verify

__all__ = ["DOCUMENTS", "IMPORTED_FROM", "MANIFEST", "META_DIR", "NOT_COPIED", "RUN_JSON",
           "RUN_SCHEMA", "SCHEMA", "ArchiveError", "Contents", "ExportResult", "ImageRecord",
           "ImportResult", "Member", "build_manifest", "check_contents", "export",
           "import_archive", "portable_record", "safe_name", "tags_to_copy", "verify"]
