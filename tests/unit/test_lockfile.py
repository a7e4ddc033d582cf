import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from envlock.errors import LockfileError
from envlock.model import lockfile
from tests.factories import make_lock, package


def test_round_trip_is_byte_identical(tmp_path):
    lock = make_lock(git={"root": "/src", "commit": "b" * 40, "branch": None, "dirty": True,
                          "diff": "diff --git a/x b/x\n+trailing space \n+tab\there\n",
                          "diff_sha256": "sha256:0", "untracked": [], "submodules": []})
    path = lockfile.write(lock, tmp_path / "envlock.lock.yaml")
    loaded = lockfile.load(path)
    assert loaded == lock
    assert lockfile.dumps(loaded) == path.read_text()
    assert loaded.git["diff"] == lock.git["diff"]


def test_document_order_is_stable_and_readable():
    doc = lockfile.to_document(make_lock())
    assert list(doc)[:4] == ["schema_version", "generator", "env_digest", "lock_digest"]
    assert list(doc)[4:] == ["python", "os", "frameworks", "gpu", "host", "git", "code",
                             "runtime", "index", "packages", "shadowed", "inputs"]


def test_env_digest_ignores_git_gpu_host_and_knobs():
    base = make_lock()
    other = make_lock(git=None, gpu={"driver_version": None, "devices": []},
                      runtime={"env": {}, "command": "other"},
                      os={**base.os, "hostname": "elsewhere", "kernel": "5.4"})
    assert other.env_digest == base.env_digest
    assert other.lock_digest != base.lock_digest


def test_env_digest_follows_packages_sources_and_python():
    base = make_lock()
    bumped = make_lock(packages=(package("numpy", "2.1.1"), base.packages[1]))
    moved = make_lock(packages=(package("numpy", "2.1.0", kind="vcs", url="https://g/x",
                                        vcs="git", commit="c" * 40), base.packages[1]))
    py = make_lock(python={**base.python, "version": "3.11.8"})
    digests = {base.env_digest, bumped.env_digest, moved.env_digest, py.env_digest}
    assert len(digests) == 4


def test_hand_edit_is_caught(tmp_path):
    path = lockfile.write(make_lock(), tmp_path / "l.yaml")
    path.write_text(path.read_text().replace("2.1.0", "2.1.9"))
    with pytest.raises(LockfileError, match="lock_digest does not match"):
        lockfile.load(path)


@pytest.mark.parametrize("text, problem", [
    ("schema_version: 1\npython: a: b\n", "malformed YAML at line 2"),
    ("- just\n- a list\n", "expected a YAML mapping"),
    ("schema_version: 99\n", "schema_version 99 is newer"),
    ("schema_version: 0\n", "schema_version 0 is no longer supported"),
    ("schema_version: one\n", "missing or invalid schema_version"),
    ("generator: x\n", "missing or invalid schema_version"),
])
def test_bad_lockfiles_name_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "bad.lock.yaml"
    path.write_text(text)
    with pytest.raises(LockfileError) as info:
        lockfile.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("packages"), "`packages`"),
    (lambda d: d["python"].pop("version"), "`python.version`"),
    (lambda d: d["packages"][0].pop("source"), "`packages[0].source`"),
    (lambda d: d["packages"][0]["source"].update(kind="ftp"), "packages[0].source.kind"),
    (lambda d: d["gpu"].update(devices="many"), "`gpu.devices` has the wrong type"),
])
def test_missing_or_wrong_fields_are_named(tmp_path, mutate, field):
    doc = lockfile.to_document(make_lock())
    mutate(doc)
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(LockfileError, match=field.replace("[", r"\[").replace("]", r"\]")):
        lockfile.load(path)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(LockfileError, match="no such lockfile.*envlock lock"):
        lockfile.load(tmp_path / "nope.yaml")


def test_migration_from_an_older_schema_runs(tmp_path, monkeypatch):
    doc = lockfile.to_document(make_lock())
    doc["schema_version"] = 0
    doc["python"]["impl"] = doc["python"].pop("implementation")

    def v0_to_v1(old):
        old["python"]["implementation"] = old["python"].pop("impl")
        old["schema_version"] = 1
        return old

    monkeypatch.setitem(lockfile.MIGRATIONS, 0, v0_to_v1)
    lock = lockfile.from_document(lockfile.migrate(doc, "old.yaml"), "old.yaml")
    assert lock.python["implementation"] == "cpython"


def _v1_document() -> dict:
    """A lock as schema 1 wrote it: no host, no code, its digest over that document."""
    doc = lockfile.to_document(make_lock())
    del doc["host"], doc["code"], doc["lock_digest"], doc["inputs"]
    doc["schema_version"] = 1
    doc["lock_digest"] = lockfile._digest(doc)
    return doc


def test_a_schema_1_lock_migrates_with_host_and_code_unknown(tmp_path):
    path = tmp_path / "v1.yaml"
    path.write_text(yaml.safe_dump(_v1_document()))
    lock = lockfile.load(path)
    assert lock.schema_version == lockfile.SCHEMA_VERSION == 3
    assert lock.host is None and lock.code is None
    assert lock.env_digest == make_lock().env_digest  # the environment is the same one
    assert lockfile.loads(lockfile.dumps(lock)) == lock  # written back as schema 2


def test_a_hand_edited_schema_1_lock_is_still_caught(tmp_path):
    doc = _v1_document()
    doc["python"]["version"] = "3.12.0"
    path = tmp_path / "v1.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(LockfileError, match="lock_digest does not match"):
        lockfile.load(path)


def test_host_and_code_must_be_mappings(tmp_path):
    doc = lockfile.to_document(make_lock())
    doc["host"] = "big machine"
    with pytest.raises(LockfileError, match="`host` must be a mapping"):
        lockfile.from_document(doc)


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = lockfile.write(make_lock(), tmp_path / "l.yaml")
    before = path.read_bytes()

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        lockfile.write(make_lock(packages=()), path)
    assert path.read_bytes() == before
    assert [p.name for p in Path(tmp_path).iterdir()] == ["l.yaml"]


def test_write_steps_around_temporary_files_left_behind(tmp_path):
    """A process killed mid-write leaves its temporary file; one with the same process id
    later must still write, and leave the stray file alone."""
    target = tmp_path / "l.yaml"
    stray = tmp_path / f".l.yaml.{os.getpid()}-0.part"
    stray.write_text("left by a killed writer")
    lockfile.write(make_lock(), target)
    assert lockfile.load(target) == make_lock()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["l.yaml", stray.name])
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_package_lookup_normalizes_names():
    lock = make_lock(packages=(package("typing-extensions", "4.12.0"),))
    assert lock.package("Typing_Extensions") is lock.packages[0]
    assert lock.package("missing") is None


def test_frozen_dataclasses():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_lock().packages[0].version = "x"  # type: ignore[misc]
