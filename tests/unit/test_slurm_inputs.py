"""A Slurm replay's pinned inputs: restored as for a local replay into a cache on the
filesystem the nodes share (``slurm.job_dir``'s), and bound read-only into the job's
container where the run saw them; a cache or a referenced file elsewhere stops the replay
in one line with the fix; a dry run pulls nothing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from envlock.config import Config
from envlock.model import runrecord
from envlock.model.inputs import Entry, Input, directory
from envlock.model.replayspec import ContainerFlags
from envlock.model.slurmjob import SlurmSettings, batch_script
from envlock.operations import inputs as carried
from envlock.operations import replayplan
from envlock.operations import slurm as ops
from envlock.operations.replayplan import ReplayRequest
from tests.factories import make_lock

RUN_ID = "0f3c9a1e2b7d4c56a8e9f0123456789a"
IMAGE = "127.0.0.1:5000/team/proj@sha256:" + "ab" * 32
TRAIN, A = b"1\n2\n3\n", b"png-a"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


COPIED = (Input("data/train.csv", "file", len(TRAIN), sha(TRAIN), carry="copy"),
          dataclasses.replace(directory("/mnt/shared/imgs", [Entry("a.png", 5, sha(A))]),
                              carry="copy"))


class Tracker:
    uri = "sqlite:///x.db"

    def __init__(self, lock):
        self.lock = lock

    def run(self, run_id):
        from envlock.adapters.tracking import RunData

        return RunData(run_id=run_id, experiment_id="1", status="FINISHED", name="r",
                       tags={"envlock.image": IMAGE, "envlock.lock_digest": self.lock.lock_digest,
                             runrecord.INPUTS: "127.0.0.1:5000/team/proj@sha256:" + "ef" * 32})

    def download(self, run_id, name, dest):
        from envlock.model import lockfile

        return lockfile.write(self.lock, dest / name)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache that holds the copies already (a replay before pulled them)."""
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    blobs = tmp_path / "cache" / "inputs" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (TRAIN, A):
        (blobs / sha(data)).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


def plan(inputs: tuple[Input, ...], shared: Path, fetch: bool = True, **request: object):
    tracker = Tracker(make_lock(inputs=inputs))
    return replayplan.slurm(ReplayRequest(RUN_ID, ContainerFlags(), **request),
                            tracker=tracker, config=Config(), shared=shared, fetch=fetch)


def test_copied_inputs_are_bound_read_only_from_the_shared_cache(cache, tmp_path):
    spec, _context = plan(COPIED, tmp_path / "jobs")
    blobs = cache / "inputs" / "blobs" / "sha256"
    assert {(m.source, m.target, m.read_only) for m in spec.inputs} == {
        (str(blobs / sha(TRAIN)), "/workspace/data/train.csv", True),
        (str(cache / "inputs" / "trees" / COPIED[1].sha256), "/mnt/shared/imgs", True)}
    assert (cache / "inputs" / "trees" / COPIED[1].sha256 / "a.png").read_bytes() == A
    script = batch_script(ops.render([(spec, _context)], SlurmSettings(), tmp_path / "job-1"))
    assert f"--volume={blobs / sha(TRAIN)}:/workspace/data/train.csv:ro" in script
    assert "/mnt/shared/imgs:ro" in script
    # Charliecloud binds read-write only: refused in one line rather than bound writable
    with pytest.raises(Exception, match="read-only"):
        batch_script(ops.render([(spec, _context)], SlurmSettings(runtime="charliecloud"),
                                tmp_path / "job-2"))


def test_a_dry_run_names_the_cache_paths_and_pulls_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(carried, "pull", lambda *a: pytest.fail("pulled"))
    spec, _context = plan(COPIED, tmp_path, fetch=False)
    assert str(tmp_path / "empty" / "inputs" / "blobs" / "sha256" / sha(TRAIN)) in \
        {m.source for m in spec.inputs}


def test_a_cache_off_the_shared_filesystem_stops_the_replay_with_the_fix(cache):
    with pytest.raises(carried.InputsError) as stopped:
        plan(COPIED, Path("/proc"))  # another filesystem than the cache's
    assert "is not on the filesystem the nodes share (/proc)" in stopped.value.message
    assert "ENVLOCK_CACHE" in stopped.value.hint and "\n" not in stopped.value.message


def test_referenced_files_must_be_on_the_shared_filesystem(cache, tmp_path):
    data = tmp_path / "ref.csv"
    data.write_bytes(TRAIN)
    here = Input(str(data), "file", len(TRAIN), sha(TRAIN), carry="reference")
    spec, context = plan((here,), tmp_path)  # on it: checked here, bound from here
    assert [(m.source, m.target) for m in spec.inputs] == [(str(data), str(data))]
    away = dataclasses.replace(here, path="/proc/version")
    with pytest.raises(carried.InputsError, match="not on the filesystem the nodes share"):
        plan((away,), tmp_path)
    spec, context = plan((away,), tmp_path, allow_changed_inputs=True)
    assert spec.inputs == ()
    assert context.inputs_changed == ("/proc/version: missing (not on the filesystem the "
                                      "nodes share)",)


def test_same_filesystem_looks_at_the_nearest_existing_folder(tmp_path):
    assert carried.same_filesystem(tmp_path / "not" / "yet", tmp_path)
    assert not carried.same_filesystem(Path("/proc/self"), tmp_path)
