"""Hugging Face hub cache entries as inputs: the pure parse (envlock.model.hub) and a tiny
model written in the hub cache's real layout, pinned, pushed and restored (the registry is
the in-memory fake of tests/unit/test_inputs_capture.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from envlock.model import hub
from envlock.operations import inputs as ops
from tests.unit.test_inputs_capture import FakeRegistry

COMMIT = "a" * 40
OLD = "b" * 40


def test_a_path_in_a_snapshot_names_the_repository_the_commit_and_the_folder():
    entry = hub.parse(f"/h/.cache/huggingface/hub/models--org--tiny-bert/snapshots/{COMMIT}"
                      "/onnx/model.onnx")
    assert entry is not None
    assert (entry.repo_id, entry.repo_type, entry.commit) == ("org/tiny-bert", "model", COMMIT)
    assert entry.path == "/h/.cache/huggingface/hub/models--org--tiny-bert"
    assert hub.parse(f"/c/datasets--squad/snapshots/{COMMIT}").repo_id == "squad"
    assert hub.parse("/c/models--org--x/blobs/" + "0" * 64) is None
    assert hub.parse("/data/train.csv") is None
    refs = {"main": COMMIT, "v1": OLD}
    assert entry.facts(refs) == {"repo": "org/tiny-bert", "type": "model",
                                 "revision": COMMIT, "refs": "main"}
    assert entry.carried(f"snapshots/{COMMIT}/config.json", refs)
    assert entry.carried("refs/main", refs)
    assert not entry.carried("refs/v1", refs)
    assert not entry.carried(f"snapshots/{OLD}/config.json", refs)


def write_model(cache, repo="org--tiny", files=None):
    """A repository in the hub cache's layout: blobs, a snapshot of links, refs/main, and
    an older snapshot that is not part of the input."""
    folder = cache / f"models--{repo}"
    files = files or {"config.json": b'{"hidden_size": 4}', "model.safetensors": b"W" * 100}
    for commit, prefix in ((COMMIT, b""), (OLD, b"old")):
        snap = folder / "snapshots" / commit
        snap.mkdir(parents=True)
        for name, body in files.items():
            blob = folder / "blobs" / hashlib.sha256(prefix + body).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(prefix + body)
            os.symlink(os.path.relpath(blob, snap), snap / name)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return folder


def test_a_read_file_of_a_snapshot_pins_the_whole_snapshot_with_its_ref(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    project = tmp_path / "proj"
    project.mkdir()
    folder = write_model(tmp_path / "hub")
    seen = str(folder / "snapshots" / COMMIT / "config.json")  # safetensors is mmapped: unseen
    pinned = ops.pin(project, ops.Sources(read=[seen]), 1 << 30, True)
    (model,) = pinned.inputs
    assert (model.kind, model.path, model.carry) == ("hub-model", str(folder), "copy")
    assert model.hub == {"repo": "org/tiny", "type": "model", "revision": COMMIT, "refs": "main"}
    assert {(f.path, f.sha256) for f in model.files} == {
        (f"snapshots/{COMMIT}/config.json", hashlib.sha256(b'{"hidden_size": 4}').hexdigest()),
        (f"snapshots/{COMMIT}/model.safetensors", hashlib.sha256(b"W" * 100).hexdigest()),
        ("refs/main", hashlib.sha256(COMMIT.encode()).hexdigest())}
    assert model.to_dict()["hub"]["revision"] == COMMIT

    registry = FakeRegistry()
    ops.push(pinned, "127.0.0.1:5000/t/e@sha256:" + "0" * 64, project, registry)
    restored = ops.restore(pinned.inputs, pinned.artifact, project=project, workdir="/w",
                           registry_for=lambda host: registry)
    ((tree, where),) = restored.mounts
    assert where == str(folder)  # the same path in the replay
    assert Path(tree, "refs", "main").read_text() == COMMIT
    assert sorted(os.listdir(os.path.join(tree, "snapshots"))) == [COMMIT]


def test_the_restored_folder_is_a_cache_huggingface_hub_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub as hf

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    folder = write_model(tmp_path / "hub")
    pinned = ops.pin(tmp_path, ops.Sources(read=[str(folder / "snapshots" / COMMIT)]),
                     1 << 30, True)
    registry = FakeRegistry()
    ops.push(pinned, "127.0.0.1:5000/t/e@sha256:" + "0" * 64, tmp_path, registry)
    ((tree, _where),) = ops.restore(pinned.inputs, pinned.artifact, project=tmp_path,
                                    workdir="/w", registry_for=lambda host: registry).mounts
    replay_cache = tmp_path / "replay-hub"
    replay_cache.mkdir()
    os.symlink(tree, replay_cache / folder.name)  # what the mount does in the container
    got = hf.hf_hub_download("org/tiny", "model.safetensors", cache_dir=str(replay_cache),
                             local_files_only=True)
    assert Path(got).read_bytes() == b"W" * 100


def test_a_referenced_hub_model_is_verified_on_its_snapshot_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    folder = write_model(tmp_path / "hub")
    pinned = ops.pin(tmp_path, ops.Sources(declared=[str(folder / "snapshots" / COMMIT)]),
                     0, True)
    (folder / "refs" / "v2").write_text(OLD)  # another ref, another snapshot: not its input
    assert ops.check(pinned.inputs, tmp_path) == []
    blob = folder / "blobs" / hashlib.sha256(b"W" * 100).hexdigest()
    blob.write_bytes(b"X" * 100)
    (change,) = ops.check(pinned.inputs, tmp_path)
    assert change.files[0].path == f"snapshots/{COMMIT}/model.safetensors"


# ---------------------------------------------------------------- remote (s3://) objects

def test_s3_objects_are_named_by_bucket_and_key_and_differ_by_etag_or_version():
    from envlock.model import inputs as model

    assert model.s3_location("s3://bucket/data/train.csv") == ("bucket", "data/train.csv")
    for bad in ("s3://bucket", "s3://bucket/", "s3:///key", "s3://bucket/dir/"):
        with pytest.raises(ValueError, match="names no S3 object"):
            model.s3_location(bad)
    old = model.remote("s3://b/k", 10, '"abc"', "v1", ("declared",))
    assert old.to_dict()["remote"] == {"etag": "abc", "version_id": "v1"}
    assert model.Input.from_dict(old.to_dict()) == old
    assert model.change(old, model.remote("s3://b/k", 10, "abc", "v1")) is None
    changed = model.change(old, model.remote("s3://b/k", 12, "def", "v2"))
    assert changed.describe() == "s3://b/k: changed (size 10 → 12, etag abc → def, " \
                                 "version_id v1 → v2)"
    (missing,) = model.verify([old], {"s3://b/k": None})
    assert missing.what == "missing"
    decided, warnings = model.decide_carry([old], 1 << 30, can_copy=True)
    assert decided[0].carry == "reference" and warnings == []


def test_an_s3_url_on_the_command_line_is_an_input(tmp_path):
    from envlock.snapshot.inputs import command_paths

    assert command_paths("python train.py --data s3://b/train.csv --lr 0.1", tmp_path,
                         set()) == ["s3://b/train.csv"]


def test_hub_models_and_s3_objects_survive_the_lockfile_and_validate_in_the_sbom():
    import dataclasses
    import json

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from envlock.model import inputs as model
    from envlock.model import lockfile
    from envlock.model.inputs import Entry
    from envlock.model.sbom import SbomInput
    from envlock.model.sbomdoc import render
    from tests.factories import make_lock

    weights = model.directory("/h/models--org--tiny", [Entry("refs/main", 40, "c" * 64)],
                              ("read",), {"repo": "org/tiny", "type": "model",
                                          "revision": COMMIT})
    lock = dataclasses.replace(make_lock(), inputs=(
        weights, model.remote("s3://b/k", 4, '"e1"', "v1", ("declared",))))
    again = lockfile.loads(lockfile.dumps(lock))
    assert again.inputs == lock.inputs and again.inputs[0].kind == "hub-model"
    document = render(SbomInput(lock=lock), "cyclonedx-json")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None
    data = {c["name"]: c for c in json.loads(document)["components"] if c["type"] == "data"}
    props = {p["name"]: p["value"] for p in data["/h/models--org--tiny"]["properties"]}
    assert props["envlock:hub_revision"] == COMMIT
    assert "hashes" not in data["s3://b/k"]  # referenced by ETag, its bytes never read
    assert {p["name"]: p["value"] for p in data["s3://b/k"]["properties"]}["envlock:etag"] == "e1"


def test_a_replay_points_hugging_face_at_the_cache_folder_where_the_models_are_mounted():
    from envlock.model.inputs import Input
    from envlock.operations.replayplan import _inputs_env

    assert hub.replay_env(["/root/.cache/huggingface/hub/models--org--a",
                           "/root/.cache/huggingface/hub/datasets--org--b/"]) == {
        "HF_HUB_CACHE": "/root/.cache/huggingface/hub", "HF_HUB_OFFLINE": "1"}
    assert hub.replay_env([]) == {}
    assert hub.replay_env(["/a/hub/models--x", "/b/hub/models--y"]) == {}  # two caches
    inputs = (Input(path="hf/models--org--a", kind="hub-model", size=1, sha256="0" * 64),
              Input(path="data/train.csv", kind="file", size=1, sha256="1" * 64))
    assert _inputs_env(inputs) == {"HF_HUB_CACHE": "/workspace/hf", "HF_HUB_OFFLINE": "1"}
    assert _inputs_env(inputs[1:]) == {}
