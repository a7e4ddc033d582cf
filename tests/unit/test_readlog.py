"""The files a run read: which opened paths may be inputs (pure), and the audit hook."""

from __future__ import annotations

import os
import time

from envlock.model import readlog
from envlock.model.readlog import Exclusions
from envlock.snapshot.readlog import Recorder

HUB = f"/home/u/.cache/huggingface/hub/models--org--tiny/snapshots/{'a' * 40}/config.json"
EXCLUDED = Exclusions(prefixes=("/opt/venv", "/home/u/.cache/envlock", "/tmp"),
                      project="/home/u/proj", tracked=frozenset({"conf/model.yaml"}))


def test_reads_outside_the_environment_and_the_tracked_code_may_be_inputs():
    kept = readlog.candidates([
        "/home/u/proj/data/train.csv", "/home/u/proj/conf/model.yaml",
        "/mnt/shared/extra.csv", "/mnt/shared/./extra.csv",
        "/opt/venv/lib/python3.11/site-packages/x/data.json",
        "/usr/lib/python3.11/json/__init__.py", "/proc/self/status", "/dev/null",
        "/sys/fs/cgroup/cpu.max", "/etc/hosts", "/tmp/tmpab12/scratch.npy",
        "/home/u/proj/mlruns/0/meta.yaml", "/home/u/proj/.envlock/runs/x/envlock.lock.yaml",
        "/home/u/.cache/pip/wheel.json", "/home/u/proj/helper.py",
        HUB, "/home/u/.cache/huggingface/token", "/d/models--org--tiny/refs/main",
        "/d/models--org--tiny/blobs/" + "0" * 64, "/home/u/.cache/huggingface/hub/version.txt",
        "/home/u/.cache/torch/hub/checkpoints/resnet18.pth",
    ], EXCLUDED)
    assert kept == [HUB, "/home/u/.cache/torch/hub/checkpoints/resnet18.pth",
                    "/home/u/proj/data/train.csv", "/mnt/shared/extra.csv"]


def test_a_project_inside_the_temp_dir_keeps_its_data():
    inside = Exclusions(prefixes=("/tmp", "/tmp/work/proj/.venv2"), project="/tmp/work/proj")
    assert inside.keep("/tmp/work/proj/data/x.csv")
    assert not inside.keep("/tmp/work/proj/.venv2/share/x.csv")  # other prefixes still hold


def test_files_modified_after_the_run_started_are_outputs():
    inputs, outputs = readlog.split_outputs({"/d/a.csv": 100, "/d/ckpt.pt": 300,
                                             "/d/b.csv": 200}, started_ns=200)
    assert (inputs, outputs) == (["/d/a.csv", "/d/b.csv"], ["/d/ckpt.pt"])


def test_only_reads_count_and_the_record_round_trips():
    assert readlog.opened_for_reading(os.O_RDONLY | os.O_CLOEXEC)
    assert not readlog.opened_for_reading(os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert not readlog.opened_for_reading(os.O_RDWR)
    record = readlog.record(["/d/b", "/d/a"], ["/d/o"])
    assert readlog.read_paths(record) == ["/d/a", "/d/b"]
    assert readlog.read_paths({"version": 9, "read": ["/x"]}) == []
    assert readlog.read_paths({"version": 1, "read": ["relative", 3, "/x"]}) == ["/x"]


def test_the_hook_records_reads_and_finish_sorts_inputs_from_outputs(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("1\n")
    recorder = Recorder()
    recorder.start()
    time.sleep(0.05)  # file times come from a coarse clock, up to a tick behind
    try:
        data.read_text()
        (tmp_path / "out.txt").write_text("written")  # a write: not recorded
        (tmp_path / "out.txt").read_text()  # read back after the start: an output
        with open(os.open(data, os.O_RDONLY), closefd=True):  # an fd: not a path
            pass
    finally:
        inputs, outputs = recorder.finish(tmp_path)
    assert inputs == [str(data.resolve())]
    assert outputs == [str((tmp_path / "out.txt").resolve())]
    seen = set(recorder.opened)
    (tmp_path / "later.csv").write_text("x")
    (tmp_path / "later.csv").read_text()  # the hook stays installed but records nothing
    assert recorder.opened == seen and str(tmp_path / "later.csv") not in seen
