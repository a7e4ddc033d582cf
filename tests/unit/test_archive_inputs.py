"""Copied inputs in an export archive (envlock.operations.archive.inputs): on a real tar,
read the way ``envlock import`` reads it; import caches the blobs where a replay looks
first, and a blob that does not match its name is refused."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from envlock.operations import inputs as ops
from envlock.operations.archive import inputs as archived
from envlock.operations.archive.format import ArchiveError, Contents
from envlock.operations.archive.verify import _scan

BLOBS = [b"1,2\n3,4\n", b"png-a"]


def archive(path, blobs=BLOBS, tamper=False):
    digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    manifest = ops.artifact_manifest([(f"data/{n}", len(b), d.split(":")[1])
                                      for n, (b, d) in enumerate(zip(blobs, digests, strict=True))])
    members = {archived.ARTIFACT: manifest}
    for body, digest in zip(blobs, digests, strict=True):
        members[archived.blob_name(digest)] = b"X" * len(body) if tamper else body
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    found, _small, sha = _scan(path)
    return Contents(path=path, sha256=sha, members=found, image=None, manifest=b"", run={})


def test_import_caches_the_input_blobs_so_a_replay_needs_no_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    contents = archive(tmp_path / "run.tar")
    assert archived.import_inputs(contents, None, None) is None  # no registry: tag kept
    for body in BLOBS:
        cached = ops.blob_root() / hashlib.sha256(body).hexdigest()
        assert cached.read_bytes() == body and not cached.stat().st_mode & 0o222


def test_an_input_blob_that_does_not_match_its_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    contents = archive(tmp_path / "run.tar", tamper=True)
    with pytest.raises(ArchiveError, match="does not match its content"):
        archived.import_inputs(contents, None, None)
    assert not ops.blob_root().exists()  # nothing cached


def test_an_archive_without_copied_inputs_has_none(tmp_path):
    path = tmp_path / "plain.tar"
    with tarfile.open(path, "w"):
        pass
    assert archived.check(Contents(path=path, sha256="", members={}, image=None,
                                   manifest=b"", run={})) == []
