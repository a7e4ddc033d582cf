"""The probe's shortcuts change nothing it reports: the RECORD digest cache is used only
while a RECORD's stat is unchanged, the JSON it writes is json's, and the version and
machine it reads without ``platform`` are platform's."""

import json
import os
import platform
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envlock.snapshot import _probe
from envlock.snapshot._probe import RecordCache, files_digest, record_rows
from envlock.snapshot.interpreter import PROBE_SOURCE

SOURCE = PROBE_SOURCE.read_text(encoding="utf-8")

RECORD = ("demo/__init__.py,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,10\n"
          "demo/core.py,sha256=BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB,20\n"
          "demo-1.0.dist-info/RECORD,,\n")


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "demo-1.0.dist-info" / "RECORD"
    path.parent.mkdir()
    path.write_text(RECORD)
    return str(path)


@pytest.fixture
def no_racy_window(monkeypatch):
    """Files written by the test are milliseconds old: let the cache take them."""
    monkeypatch.setattr(_probe, "RACY_NS", 0)


def truth(path):
    rows = record_rows(path)
    return files_digest(rows), len(rows)


def cache_file(tmp_path, cache):
    path = tmp_path / "cache.tsv"
    text = cache.text()
    if text is not None:
        path.write_text(text)
    return str(path)


def test_a_cached_summary_is_used_while_the_stat_is_unchanged(tmp_path, record, no_racy_window):
    first = RecordCache(str(tmp_path / "none.tsv"))
    assert first.summary(record) == truth(record)
    stored = cache_file(tmp_path, first)
    # a digest only the cache can know: the RECORD is not read again
    fake = "sha256:" + "f" * 64
    with open(stored) as handle:
        text = handle.read()
    with open(stored, "w") as handle:
        handle.write(text.replace(truth(record)[0], fake))
    again = RecordCache(stored)
    assert again.summary(record) == (fake, 3)
    assert again.text() is None  # nothing to write back


def test_any_rewrite_of_a_record_is_read_again_even_with_size_and_mtime_kept(
        tmp_path, record, no_racy_window):
    cache = RecordCache(str(tmp_path / "none.tsv"))
    before = cache.summary(record)
    stored = cache_file(tmp_path, cache)
    info = os.stat(record)
    edited = RECORD.replace("BBBB", "CCCC", 1)
    assert len(edited) == len(RECORD)
    with open(record, "r+") as handle:  # in place: same inode, same size
        handle.write(edited)
    os.utime(record, ns=(info.st_atime_ns, info.st_mtime_ns))  # mtime put back
    assert os.stat(record).st_mtime_ns == info.st_mtime_ns
    after = RecordCache(stored).summary(record)
    assert after == truth(record) and after != before


def test_a_replaced_record_is_read_again(tmp_path, record, no_racy_window):
    cache = RecordCache(str(tmp_path / "none.tsv"))
    cache.summary(record)
    stored = cache_file(tmp_path, cache)
    replacement = record + ".new"
    with open(replacement, "w") as handle:
        handle.write(RECORD.replace("AAAA", "DDDD", 1))
    info = os.stat(record)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(replacement, record)
    assert RecordCache(stored).summary(record) == truth(record)


def test_a_record_changed_within_the_racy_window_is_not_cached(tmp_path, record):
    cache = RecordCache(str(tmp_path / "none.tsv"))
    assert cache.summary(record) == truth(record)
    assert cache.text() is None  # written just now: not trusted to a stat


def test_records_that_are_gone_leave_the_cache(tmp_path, record, no_racy_window):
    cache = RecordCache(str(tmp_path / "none.tsv"))
    cache.summary(record)
    stored = cache_file(tmp_path, cache)
    later = RecordCache(stored)
    assert later.text() == f"{_probe.RECORD_CACHE_HEADER}\n"


@pytest.mark.parametrize("content", ["", "garbage\n", "envlock record cache 0\nx\t1\n",
                                     f"{_probe.RECORD_CACHE_HEADER}\nshort\tline\n",
                                     f"{_probe.RECORD_CACHE_HEADER}\n" + "\t".join(
                                         ["/p", "1", "2", "3", "4", "5", "md5:x", "3"]) + "\n"])
def test_a_damaged_cache_file_is_ignored(tmp_path, record, content):
    path = tmp_path / "cache.tsv"
    path.write_text(content)
    assert RecordCache(str(path)).summary(record) == truth(record)


def test_an_unreadable_record_is_none(tmp_path):
    cache = RecordCache(str(tmp_path / "none.tsv"))
    assert cache.summary(str(tmp_path / "missing" / "RECORD")) is None


def test_the_probe_reports_the_same_with_and_without_the_cache(tmp_path, no_racy_window):
    plain = _probe.probe()
    cache = RecordCache(str(tmp_path / "none.tsv"))
    assert _probe.probe(cache=cache) == plain
    warm = RecordCache(cache_file(tmp_path, cache))
    assert _probe.probe(cache=warm) == plain and warm.text() is None


def test_the_probe_program_writes_its_cache_update(tmp_path):
    """As envlock runs it: the answer carries the cache file's new content (None when
    unchanged), and is the same answer as without a cache."""
    def run(*args):
        out = subprocess.run([sys.executable, "-c", SOURCE, *args], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)

    path = tmp_path / "cache.tsv"
    answer = run("--record-cache", str(path))
    update = answer.pop("record_cache")
    assert answer == run()
    assert update is None or update.startswith(_probe.RECORD_CACHE_HEADER)


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(JSON_LIKE)
def test_dumps_writes_what_json_writes(value):
    assert _probe.dumps(value) == json.dumps(value, separators=(",", ":"))


def test_dumps_of_a_real_answer_and_of_what_is_not_plain_json():
    answer = _probe.probe()
    assert json.loads(_probe.dumps(answer)) == answer
    assert _probe.dumps({"a": 1.5, "b": (1, "\udcff")}) == json.dumps({"a": 1.5,
                                                                        "b": [1, "\udcff"]})


def test_version_and_machine_are_platforms():
    assert _probe.python_version() == platform.python_version()
    assert _probe.machine() == platform.machine()


@pytest.mark.parametrize("version, expected", [
    ("3.11.7 (main, Dec  8 2023, 14:22:46) [GCC 12.2.0]", "3.11.7"),
    ("3.13.0rc1 (main, Aug  1 2024, 00:00:00) [GCC 13.2.0]", "3.13.0rc1"),
    ("3.12.0a7+ (heads/main:abc, Apr  1 2023, 00:00:00) [Clang 15.0.0]", "3.12.0a7+"),
    ("3.10 (default, Jan  1 2022, 00:00:00) [GCC 11.2.0]", "3.10.0"),
])
def test_version_parsing_matches_platform(monkeypatch, version, expected):
    monkeypatch.setattr(sys, "version", version)
    assert _probe.python_version() == expected
    assert platform._sys_version(version)[1] == expected


def test_the_probe_copy_reports_what_the_probe_source_does(tmp_path, monkeypatch):
    """The copy under the cache directory is imported with that directory on sys.path
    only while importing: the answer (sys.path included) is the one ``-c SOURCE`` gives."""
    from envlock.snapshot.interpreter import start_probe

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    pending = start_probe(sys.executable)
    assert "--record-cache" in pending.argv
    via_copy = pending.result()
    copies = list((tmp_path / "cache" / "probe").glob("envlock_probe_*.py"))
    assert [c.read_text() for c in copies] == [SOURCE]
    (tmp_path / "blocked").write_text("a file where the cache directory should be")
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "blocked"))
    pending = start_probe(sys.executable)
    assert "--record-cache" not in pending.argv  # nothing can be cached: the source runs
    assert pending.result() == via_copy


def test_a_probe_copy_that_differs_is_rewritten_before_use(tmp_path, monkeypatch):
    from envlock.snapshot.interpreter import start_probe

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path))
    start_probe(sys.executable).result()
    copy = next((tmp_path / "probe").glob("envlock_probe_*.py"))
    copy.write_text("raise SystemExit('not the probe')\n")
    answer = start_probe(sys.executable).result()
    assert answer["probe_version"] == 1 and copy.read_text() == SOURCE


def test_a_cache_directory_others_may_write_to_is_not_used(tmp_path, monkeypatch):
    """The probe copy is executed and RECORD digests are trusted: not from a directory
    another user could write to."""
    from envlock.snapshot.interpreter import start_probe

    shared = tmp_path / "shared"
    (shared / "probe").mkdir(parents=True)
    (shared / "records").mkdir()
    (shared / "probe").chmod(0o777)
    monkeypatch.setenv("ENVLOCK_CACHE", str(shared))
    pending = start_probe(sys.executable)
    assert "--record-cache" not in pending.argv and pending.argv[1] == SOURCE
    assert pending.result()["probe_version"] == 1
    assert not list((shared / "probe").iterdir())


def test_cache_directories_are_made_private(tmp_path, monkeypatch):
    from envlock.snapshot.interpreter import start_probe

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    start_probe(sys.executable).result()
    for name in ("probe", "records"):
        assert (tmp_path / "cache" / name).stat().st_mode & 0o777 == 0o700
