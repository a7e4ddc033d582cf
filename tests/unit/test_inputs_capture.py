"""Finding, hashing and carrying inputs (envlock.snapshot.inputs, envlock.operations.inputs)
on real files; the registry is an in-memory fake of the distribution API's blob calls."""

import hashlib
import os
import subprocess
import time

import pytest

from envlock.model.inputs import Entry, Input, directory
from envlock.model.replayspec import Mount, ReplaySpec, docker_args
from envlock.operations import inputs as ops
from envlock.snapshot import inputs as snap


class FakeRegistry:
    def __init__(self):
        self.blobs, self.manifests, self.sent = {}, {}, 0

    def has_blob(self, repository, digest):
        return digest in self.blobs

    def push_blob(self, repository, digest, size, data):
        body = data.read()
        assert len(body) == size and "sha256:" + hashlib.sha256(body).hexdigest() == digest
        self.blobs[digest] = body
        self.sent += size

    def put_manifest(self, repository, tag, data, media):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[tag] = data
        return digest

    def blob(self, repository, digest):
        yield self.blobs[digest]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    (root / "data" / "imgs").mkdir(parents=True)
    (root / "data" / "train.csv").write_text("1,2\n3,4\n")
    (root / "data" / "imgs" / "a.png").write_bytes(b"png-a")
    (root / "data" / "imgs" / "b.png").write_bytes(b"png-b")
    (root / "train.py").write_text("print(1)\n")
    (root / ".gitignore").write_text("data/\n.venv/\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "x.json").write_text("{}")
    (root / "data" / "secrets.env").write_text("TOKEN=1\n")
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


def test_declared_config_and_command_line_inputs_are_hashed_merged_and_carried(project, tmp_path):
    outside = tmp_path / "shared.bin"
    outside.write_bytes(b"z" * 2000)
    sources = ops.Sources(declared=["data/imgs"], configured=["data/train.csv"],
                          command=f"python train.py --data={outside} --n 3")
    pinned = ops.pin(project, sources, copy_max=100, can_copy=True)
    by_path = {i.path: i for i in pinned.inputs}
    assert set(by_path) == {"data/imgs", "data/train.csv", str(outside)}
    assert by_path["data/imgs"].kind == "directory"
    assert [f.path for f in by_path["data/imgs"].files] == ["a.png", "b.png"]
    assert by_path["data/train.csv"].sha256 == hashlib.sha256(b"1,2\n3,4\n").hexdigest()
    assert by_path[str(outside)].carry == "reference" and by_path["data/imgs"].carry == "copy"
    assert any("is referenced, not copied" in w for w in pinned.warnings)


def test_unpinned_git_ignored_data_secrets_and_outputs_are_named_with_the_fix(project):
    os.utime(project / "data" / "imgs" / "b.png", ns=(10**19, 10**19))  # written later
    sources = ops.Sources(declared=["data/imgs", "data/secrets.env"],
                          started_ms=time.time_ns() // 10**6 + 1000)
    pinned = ops.pin(project, sources, copy_max=1 << 30, can_copy=True)
    assert [f.path for f in pinned.inputs[0].files] == ["a.png"]
    text = "\n".join(pinned.warnings)
    assert "data/imgs/b.png was modified after the run started: an output" in text
    assert "input data/secrets.env (a secret by its name) looks like a secret" in text
    assert "--allow-file" in text
    assert "git-ignored data not pinned: data/train.csv" in text
    assert "envlock capture --input data/train.csv" in text
    assert ".venv" not in text


def test_a_declared_input_that_is_missing_is_an_error(project):
    from envlock.errors import UsageError

    with pytest.raises(UsageError, match="input data/nope.csv: no such file"):
        ops.pin(project, ops.Sources(declared=["data/nope.csv"]), 1 << 30, True)


def test_the_stat_cache_spares_rehashing_unchanged_files(project, monkeypatch):
    calls = []
    real = snap.sha256_file
    monkeypatch.setattr(snap, "sha256_file", lambda p: calls.append(p) or real(p))
    ops.pin(project, ops.Sources(declared=["data/imgs"]), 1 << 30, True)
    assert len(calls) == 2
    ops.pin(project, ops.Sources(declared=["data/imgs"]), 1 << 30, True)
    assert len(calls) == 2  # unchanged: from the cache
    (project / "data" / "imgs" / "a.png").write_bytes(b"png-A2")
    ops.pin(project, ops.Sources(declared=["data/imgs"]), 1 << 30, True)
    assert len(calls) == 3


def test_copies_are_pushed_once_and_restored_read_only_where_the_run_saw_them(project):
    pinned = ops.pin(project, ops.Sources(declared=["data/imgs", "data/train.csv"]),
                     1 << 30, True)
    registry = FakeRegistry()
    image = "127.0.0.1:5000/team/exp@sha256:" + "0" * 64
    ops.push(pinned, image, project, registry)
    assert pinned.pushed_blobs == 3 and pinned.artifact.startswith("127.0.0.1:5000/team/exp@")
    again = ops.pin(project, ops.Sources(declared=["data/imgs", "data/train.csv"]),
                    1 << 30, True)
    ops.push(again, image, project, registry)
    assert again.pushed_bytes == 0 and again.reused_blobs == 3
    assert again.artifact == pinned.artifact

    (project / "data" / "train.csv").unlink()
    restored = ops.restore(pinned.inputs, pinned.artifact, project=project,
                           workdir="/workspace", registry_for=lambda host: registry)
    mounts = dict((dst, src) for src, dst in restored.mounts)
    assert set(mounts) == {"/workspace/data/imgs", "/workspace/data/train.csv"}
    with open(mounts["/workspace/data/train.csv"], "rb") as handle:
        assert handle.read() == b"1,2\n3,4\n"
    assert sorted(os.listdir(mounts["/workspace/data/imgs"])) == ["a.png", "b.png"]


def test_a_referenced_input_that_changed_stops_the_replay_unless_allowed(project):
    pinned = ops.pin(project, ops.Sources(declared=["data/train.csv"]), 0, True)
    assert pinned.inputs[0].carry == "reference"
    (project / "data" / "train.csv").write_text("changed\n")
    with pytest.raises(ops.InputsError, match=r"data/train.csv: changed \(size 8 → 8, sha256|"
                       r"data/train.csv: changed \(sha256") as caught:
        ops.restore(pinned.inputs, None, project=project, workdir="/workspace")
    assert caught.value.exit_code == 2 and "--allow-changed-inputs" in caught.value.hint
    restored = ops.restore(pinned.inputs, None, project=project, workdir="/workspace",
                           allow_changed=True)
    assert [c.path for c in restored.changed] == ["data/train.csv"]
    assert restored.mounts == ((str(project / "data" / "train.csv"),
                                "/workspace/data/train.csv"),)


def test_a_blob_that_does_not_match_its_hash_is_refused(project):
    pinned = ops.pin(project, ops.Sources(declared=["data/train.csv"]), 1 << 30, True)
    registry = FakeRegistry()
    ops.push(pinned, "127.0.0.1:5000/r@sha256:" + "0" * 64, project, registry)
    registry.blobs = {k: b"tampered" for k in registry.blobs}
    with pytest.raises(ops.InputsError, match="does not match its hash"):
        ops.restore(pinned.inputs, pinned.artifact, project=project, workdir="/w",
                    registry_for=lambda host: registry)


def test_inputs_render_as_read_only_bind_mounts_and_a_job_refuses_them():
    from envlock.errors import UsageError
    from envlock.model.kubejob import JobSpec, job_manifest

    spec = ReplaySpec(run_id="r", image="i@sha256:" + "1" * 64,
                      inputs=(Mount("/cache/b2", "/workspace/data/x.csv", True),
                              Mount("/cache/b2", "/mnt/x.csv", True)))
    mounts = docker_args(spec)["mounts"]
    assert mounts[0]["Target"] == "/workspace" and mounts[0]["Type"] == "volume"
    assert mounts[1:] == [
        {"Target": "/mnt/x.csv", "Source": "/cache/b2", "Type": "bind", "ReadOnly": True},
        {"Target": "/workspace/data/x.csv", "Source": "/cache/b2", "Type": "bind",
         "ReadOnly": True}]
    with pytest.raises(UsageError, match="replay it with --on local"):
        job_manifest(JobSpec(name="j", replay=spec, tracking_uri="http://x"))


def test_mlflow_dataset_sources_that_are_local_paths_or_s3_objects_are_inputs():
    found = snap.dataset_paths([
        {"name": "train", "digest": "abc", "source": '{"uri": "/data/train.csv"}'},
        {"name": "remote", "digest": "d", "source": '{"uri": "s3://b/k"}'},
        {"name": "web", "digest": "w", "source": '{"url": "https://example.com/x.csv"}'},
        {"name": "relative", "digest": "r", "source": '{"uri": "data/x.csv"}'},
        {"name": "file", "digest": "e", "source": '{"uri": "file:///data/x.parquet"}'},
        {"name": "none", "digest": "f", "source": "{}"}])
    assert found == [("/data/train.csv", {"name": "train", "digest": "abc"}),
                     ("s3://b/k", {"name": "remote", "digest": "d"}),
                     ("/data/x.parquet", {"name": "file", "digest": "e"})]


def test_an_s3_dataset_keeps_its_url_and_mlflow_digest_on_the_pinned_input(tmp_path):
    from envlock.model.inputs import remote

    found = snap.Found(inputs=[remote("s3://b/k", 4, '"e1"', "v1", ("mlflow",))])
    snap.with_datasets(found, [("s3://b/k", {"name": "remote", "digest": "d"})], tmp_path)
    (pinned,) = found.inputs
    assert (pinned.path, pinned.dataset) == ("s3://b/k", {"name": "remote", "digest": "d"})
    assert pinned.remote == {"etag": "e1", "version_id": "v1"}


def test_a_directory_input_diffs_from_a_changed_copy_file_by_file():
    old = directory("d", [Entry("a", 1, "a" * 64)])
    new = Input(path="d", kind="directory", size=0, sha256="b" * 64)
    from envlock.model.inputs import change

    assert change(old, new).files[0].what == "missing"
