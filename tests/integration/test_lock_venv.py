"""`envlock lock --python` on a real virtualenv holding every kind of package source."""

from __future__ import annotations

import json

import pytest

from envlock.model import lockfile
from tests.conftest import git, run_envlock


@pytest.fixture(scope="module")
def zoo_lock(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("lock") / "envlock.lock.yaml"
    result = run_envlock("lock", "--python", str(zoo.python), "-o", str(out), "--no-git",
                         "--command", "python train.py --lr 0.1", check=True)
    return lockfile.load(out), out, result


def test_every_distribution_is_recorded_with_its_exact_source(zoo, zoo_lock):
    lock, _, _ = zoo_lock
    names = {p.name for p in lock.packages}
    assert {"pip", "setuptools", "wheel", "six", "editpkg", "vcspkg", "wheelpkg",
            "localtag"} <= names
    assert lock.package("six").source.kind == "index"
    assert lock.package("six").version == "1.16.0"


def test_editable_records_path_commit_and_dirty_state(zoo, zoo_lock):
    src = zoo_lock[0].package("editpkg").source
    assert (src.kind, src.path) == ("editable", str(zoo.editpkg))
    assert src.git_commit == git(zoo.editpkg, "rev-parse", "HEAD")
    assert src.git_dirty is True


def test_vcs_records_the_commit(zoo, zoo_lock):
    src = zoo_lock[0].package("vcspkg").source
    assert (src.kind, src.vcs, src.commit, src.requested_revision) == \
        ("vcs", "git", zoo.vcs_commit, "v1.2.0")
    assert src.url == f"file://{zoo.vcspkg}"


def test_local_wheel_records_its_hash(zoo, zoo_lock):
    import hashlib

    src = zoo_lock[0].package("wheelpkg").source
    assert (src.kind, src.path) == ("archive", str(zoo.wheel_file))
    assert src.hash == "sha256:" + hashlib.sha256(zoo.wheel_file.read_bytes()).hexdigest()


def test_local_version_tag_is_kept(zoo_lock):
    pkg = zoo_lock[0].package("localtag")
    assert pkg.version == "1.0.0+cu121" and pkg.source.kind == "directory"


def test_stale_egg_info_is_shadowed_not_dropped(zoo, zoo_lock):
    lock, _, result = zoo_lock
    assert [(s.name, s.version, s.dir) for s in lock.shadowed] == \
        [("six", "1.15.0", "six-1.15.0.egg-info")]
    assert "shadowed" in result.stderr


def test_python_facts_are_the_target_interpreter(zoo, zoo_lock):
    py = zoo_lock[0].python
    assert py["venv"] is True and py["executable"] == str(zoo.python)
    assert py["platform_tag"].startswith(("manylinux_", "musllinux_"))
    assert zoo_lock[0].runtime["command"] == "python train.py --lr 0.1"


def test_nothing_was_installed_into_the_target(zoo, zoo_lock):
    assert "envlock" not in {p.name for p in zoo_lock[0].packages}


def test_lock_is_byte_identical_when_nothing_changed(zoo, zoo_lock, tmp_path):
    _, first, _ = zoo_lock
    second = tmp_path / "again.yaml"
    run_envlock("lock", "--python", str(zoo.python), "-o", str(second), "--no-git",
                "--command", "python train.py --lr 0.1", check=True)
    assert second.read_bytes() == first.read_bytes()


def test_show_summarizes(zoo_lock):
    _, path, _ = zoo_lock
    result = run_envlock("show", str(path), check=True)
    assert "Packages:" in result.stdout and "editable" in result.stdout
    assert "GPU:" in result.stdout and "env_digest" in result.stdout


def test_json_results_parse(zoo, zoo_lock):
    _, path, _ = zoo_lock
    shown = json.loads(run_envlock("show", str(path), "--json", check=True).stdout)
    assert shown["schema"] == "envlock.result/1" and shown["ok"] is True
    assert shown["result"]["env_digest"] == zoo_lock[0].env_digest
    checked = json.loads(run_envlock("check", "--lock", str(path), "--python", str(zoo.python),
                                     "--json").stdout)
    assert checked["command"] == "check" and checked["result"]["drifted"] is False


def test_the_record_cache_never_hides_a_changed_record(fresh_venv, tmp_path):
    """A real venv locked with a warm RECORD cache, then pip's RECORD rewritten in place
    with its size and mtime kept: the next lock reads it again and records what a lock
    without any cache records."""
    import os
    import time

    def lock(name, cache):
        out = tmp_path / name
        run_envlock("lock", "--python", str(fresh_venv), "-o", str(out), "--no-git",
                    "--no-gpu", env={"ENVLOCK_CACHE": str(tmp_path / cache)}, check=True)
        return out, lockfile.load(out).package("pip").files_digest

    record = next(fresh_venv.parent.parent.glob("lib/python*/site-packages/pip-*.dist-info"
                                                "/RECORD"))
    info = record.stat()
    time.sleep(max(0.0, 2.05 - (time.time() - info.st_ctime)))  # past the racy window
    first, digest = lock("first.yaml", "cache")
    assert str(record) in "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.tsv"))
    second, _ = lock("second.yaml", "cache")
    assert second.read_bytes() == first.read_bytes()

    text = record.read_text()
    row = next(line for line in text.splitlines() if line.startswith("pip/__init__.py,"))
    at = row.index("sha256=") + len("sha256=")
    edited_row = row[:at] + ("A" if row[at] != "A" else "B") + row[at + 1:]  # same length
    with record.open("r+") as handle:
        handle.write(text.replace(row, edited_row, 1))
    os.utime(record, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert (record.stat().st_size, record.stat().st_mtime_ns) == (info.st_size,
                                                                  info.st_mtime_ns)
    _, cached = lock("third.yaml", "cache")
    _, uncached = lock("fresh.yaml", "empty-cache")
    assert cached == uncached != digest
