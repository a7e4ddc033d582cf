"""The lock's typed sections: a lock missing a key the rest of envlock reads fails on load."""

from __future__ import annotations

import pytest

from envlock.errors import LockfileError
from envlock.model import lockfile, locksections
from envlock.model.locksections import PythonSection


def _lock() -> lockfile.Lock:
    return lockfile.Lock(
        python=PythonSection(implementation="CPython", version="3.11.7",
                             executable="/usr/bin/python3", venv=True,
                             platform_tag="manylinux_2_36_x86_64", arch="x86_64"),
        os={"system": "Linux", "distro": "debian", "distro_version": "12", "kernel": "6.1",
            "libc": {"family": "glibc", "version": "2.36"}, "arch": "x86_64", "container": None},
        packages=())


def test_a_lock_round_trips_byte_for_byte_through_the_typed_sections() -> None:
    text = lockfile.dumps(_lock())
    assert lockfile.dumps(lockfile.loads(text)) == text


@pytest.mark.parametrize(("section", "key"), [
    ("python", "version"), ("python", "arch"), ("os", "libc"), ("os", "system")])
def test_a_section_without_a_key_envlock_reads_fails_on_load_naming_it(
        section: str, key: str) -> None:
    doc = lockfile.to_document(_lock())
    del doc[section][key]
    with pytest.raises(LockfileError, match=rf"missing field `{section}\.{key}`"):
        lockfile.from_document(doc, "x.lock.yaml")


def test_a_key_of_the_wrong_type_fails_too() -> None:
    doc = lockfile.to_document(_lock())
    doc["code"] = {"root": "/p", "files": "not a list"}
    with pytest.raises(LockfileError, match=r"field `code\.files` has the wrong type \(str\)"):
        lockfile.from_document(doc, "x.lock.yaml")


def test_every_required_key_is_a_declared_key_of_its_typed_section() -> None:
    typed = {"python": locksections.PythonSection, "os": locksections.OsSection,
             "gpu": locksections.GpuSection, "runtime": locksections.RuntimeSection,
             "index": locksections.IndexSection, "code": locksections.CodeSection}
    for name, keys in locksections.REQUIRED_KEYS.items():
        if name in typed:
            assert set(keys) <= set(typed[name].__annotations__), name
