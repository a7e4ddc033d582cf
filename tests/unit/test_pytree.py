"""A carried interpreter tree (issue #24 item 4): which trees qualify, what of them is
carried, their digest, ldd's verdict, the lock's identity, the layer's determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envlock.adapters.ocistore import Store
from envlock.model import pytree
from envlock.model.lockfile import dumps, loads
from envlock.operations.build import interpreter
from envlock.progress import Silent
from tests.factories import make_lock


@pytest.mark.parametrize(("prefix", "has_json", "kind"), [
    ("/root/.local/share/uv/python/cpython-3.12.8-linux-x86_64-gnu", False,
     "python-build-standalone"),
    ("/root/.local/share/uv/python/cpython-3.12-linux-x86_64-gnu", False,
     "python-build-standalone"),
    ("/opt/python/install", True, "python-build-standalone"),
    ("/root/.pyenv/versions/3.11.7", False, "pyenv"),
    ("/usr", False, None),
    ("/opt/conda", False, None),
    ("/root/.pyenv/versions/miniconda3-latest", False, None),
])
def test_which_trees_are_carried(prefix, has_json, kind):
    assert pytree.kind_of(prefix, has_json) == kind


@pytest.mark.parametrize(("rel", "kept"), [
    ("bin/python3.11", True), ("bin/python3", True), ("bin/pip", False),
    ("bin/pytest", False), ("lib/libpython3.11.so.1.0", True),
    ("lib/python3.11/os.py", True), ("lib/python3.11/site-packages", True),
    ("lib/python3.11/site-packages/numpy/__init__.py", False),
    ("lib/python3.11/test", False), ("lib/python3.11/test/test_os.py", False),
    ("lib/python3.11/json/__pycache__/x.cpython-311.pyc", False),
    ("lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a", False),
    ("lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", True),
    ("include/python3.11/Python.h", True),
])
def test_what_of_a_tree_is_carried(rel, kept):
    assert pytree.carried(rel, "3.11") is kept


def test_the_prefix_comes_from_the_standard_library_on_sys_path():
    python = {"version": "3.11.7", "sys_path": ["/root/.pyenv/versions/3.11.7/lib/python311.zip",
                                                "/root/.pyenv/versions/3.11.7/lib/python3.11",
                                                "/v/lib/python3.11/site-packages"]}
    assert pytree.base_prefix(python) == "/root/.pyenv/versions/3.11.7"
    assert pytree.base_prefix({"version": "3.11.7", "sys_path": []}) is None


def test_the_digest_covers_content_kind_and_mode_not_order():
    a = pytree.Entry("bin/python3.11", "file", sha256="a" * 64, executable=True)
    b = pytree.Entry("bin/python3", "link", target="python3.11")
    assert pytree.tree_digest([a, b]) == pytree.tree_digest([b, a])
    assert pytree.tree_digest([a, b]) != pytree.tree_digest(
        [pytree.Entry(a.path, "file", sha256=a.sha256, executable=False), b])
    assert pytree.tree_digest([a, b]) != pytree.tree_digest(
        [a, pytree.Entry(b.path, "link", target="python3")])


LDD = """/p/bin/python3.11:
\tlinux-vdso.so.1 (0x00007ffd)
\tlibpython3.11.so.1.0 => /p/lib/libpython3.11.so.1.0 (0x00007f)
\tlibcrypt.so.2 => not found
/p/lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so:
\tlibtk8.6.so => not found
\tlibtcl8.6.so => not found
/p/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so:
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f)
"""


def test_ldd_names_what_is_missing_and_what_is_essential():
    missing = pytree.missing_libraries(LDD)
    assert missing == {"/p/bin/python3.11": ["libcrypt.so.2"],
                       "/p/lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so":
                           ["libtk8.6.so", "libtcl8.6.so"]}
    assert pytree.essential("/p/bin/python3.11", "/p")
    assert pytree.essential("/p/lib/libpython3.11.so.1.0", "/p")
    assert not pytree.essential(
        "/p/lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so", "/p")


def test_a_carried_interpreter_changes_the_environment_and_survives_the_file():
    plain = make_lock()
    carried = make_lock(python={**plain.python, "carried": {
        "kind": "pyenv", "prefix": "/root/.pyenv/versions/3.11.7", "digest": "sha256:" + "b" * 64,
        "files": 3}})
    assert carried.env_digest != plain.env_digest
    assert "carried" not in dumps(plain)  # locks without one keep their bytes
    assert loads(dumps(carried)).python["carried"]["prefix"] == "/root/.pyenv/versions/3.11.7"


def _tree(root: Path) -> Path:
    prefix = root / ".pyenv" / "versions" / "3.11.7"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "python3.11" / "site-packages" / "numpy").mkdir(parents=True)
    (prefix / "lib" / "python3.11" / "os.py").write_text("# os\n")
    (prefix / "lib" / "python3.11" / "site-packages" / "numpy" / "x.py").write_text("")
    (prefix / "bin" / "python3.11").write_bytes(b"\x7fELF")
    os.chmod(prefix / "bin" / "python3.11", 0o755)
    (prefix / "bin" / "python3").symlink_to("python3.11")
    (prefix / "bin" / "pip").write_text("#!/x\n")
    return prefix


def test_the_tree_is_planned_verified_and_written_the_same_twice(tmp_path):
    prefix = _tree(tmp_path / "home")
    lock = make_lock(python={**make_lock().python,
                             "sys_path": [f"{prefix}/lib/python3.11"]})
    assert interpreter.candidate(lock) == (str(prefix), "pyenv")
    assert interpreter.plan(lock, "3.11.7", "base", Silent()) is lock  # the base has it
    planned = interpreter.plan(lock, "3.11.2", "base", Silent())
    record = planned.python["carried"]
    assert record["kind"] == "pyenv" and record["files"] == 2  # os.py, python3.11
    entries = interpreter.verified(planned)
    assert [e.path for e in entries] == ["bin", "bin/python3", "bin/python3.11", "lib",
                                         "lib/python3.11", "lib/python3.11/os.py",
                                         "lib/python3.11/site-packages"]
    first = interpreter.layer(Store(tmp_path / "a"), planned, entries)
    second = interpreter.layer(Store(tmp_path / "b"), planned, entries)
    assert first == second
    assert interpreter.layer(Store(tmp_path / "a"), planned, entries) == first  # reused
    facts = interpreter.with_interpreter(_facts(), planned)
    assert facts.interpreter == f"{prefix}/bin/python3"
    assert facts.executable == f"{prefix}/bin/python3.11" and facts.python == "3.11.7"
    (prefix / "lib" / "python3.11" / "os.py").write_text("# changed\n")
    with pytest.raises(Exception, match="differs from the one the run was captured with"):
        interpreter.verified(planned)


def _facts():
    from envlock.operations.build.stage import BaseFacts

    return BaseFacts(digest="sha256:" + "0" * 64, python="3.11.2", interpreter="/usr/bin/python3",
                     executable="/usr/bin/python3.11", passwd="", group="")


def test_a_uv_minor_version_link_carries_the_tree_it_points_at(tmp_path):
    """uv links cpython-3.12-… to cpython-3.12.8-…; the venv may name the link."""
    store = tmp_path / "uv" / "python"
    real = store / "cpython-3.11.7-linux-x86_64-gnu"
    (real / "bin").mkdir(parents=True)
    (real / "lib" / "python3.11").mkdir(parents=True)
    (store / "cpython-3.11-linux-x86_64-gnu").symlink_to(real.name)
    lock = make_lock(python={**make_lock().python, "sys_path": [
        f"{store}/cpython-3.11-linux-x86_64-gnu/lib/python3.11"]})
    assert interpreter.candidate(lock) == (str(real), "python-build-standalone")


def _carried_lock(prefix: str):
    return make_lock(python={**make_lock().python, "carried": {
        "kind": "pyenv", "prefix": prefix, "digest": "sha256:" + "c" * 64, "files": 2}})


@pytest.mark.parametrize(("output", "refused"), [
    (LDD, True),  # the interpreter needs libcrypt.so.2, which the base lacks
    (LDD.replace("\tlibcrypt.so.2 => not found\n", ""), False),  # only _tkinter: named
])
def test_the_base_lacking_the_interpreters_libraries_is_refused(monkeypatch, tmp_path,
                                                                output, refused):
    from envlock.adapters import ociruntime
    from envlock.errors import UsageError

    calls = []
    monkeypatch.setattr(ociruntime, "run", lambda rootfs, args, binds: calls.append(
        (args, binds)) or (0, output.encode(), b""))
    steps: list[str] = []

    class Report(Silent):
        def step(self, message: str) -> None:
            steps.append(message)

    entries = [pytree.Entry("bin/python3.11", "file", sha256="a" * 64, executable=True),
               pytree.Entry("lib/python3.11/os.py", "file", sha256="b" * 64)]
    lock = _carried_lock("/p")
    if refused:
        with pytest.raises(UsageError, match="lacks libraries the carried Python 3.11.7 "
                                             "needs: libcrypt.so.2"):
            interpreter.check_libraries(tmp_path, lock, entries, Report())
    else:
        interpreter.check_libraries(tmp_path, lock, entries, Report())
        assert steps == ["the carried interpreter's modules that cannot load in this base "
                         "(their libraries are missing there): _tkinter (libtk8.6.so "
                         "libtcl8.6.so)"]
    assert calls[0][0][-1] == "/p/bin/python3.11" and calls[0][1] == [(Path("/p"), "/p")]
