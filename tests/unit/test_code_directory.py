"""A project outside git: the walk that fills the lock's ``code`` section, its size cap, and
materializing the recorded files back (hash-checked) for the code layer."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from envlock.errors import UsageError
from envlock.model import lockfile
from envlock.model.diff import diff_locks
from envlock.operations.code import CodeError, code_context, materialize, pack
from envlock.snapshot import LOCAL_STATE
from envlock.snapshot.directory import Rules, parse_size, probe_directory
from tests.factories import make_lock


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def project(root: Path) -> Path:
    write(root, {
        "train.py": "import helpers\n", "helpers.py": "X = 1\n", "data/a.csv": "1,2\n",
        ".venv/pyvenv.cfg": "home = /usr\n", ".venv/lib/site.py": "venv\n",
        "env/conda-meta/history": "conda\n", "env/bin/python": "conda\n",
        "pkg/__pycache__/m.cpython-311.pyc": b"\0", ".git/HEAD": "ref\n",
        ".envlock/runs/r/envlock.lock.yaml": "old\n", "mlruns/0/meta.yaml": "m\n",
        "mlartifacts/x": "a\n", "mlflow.db": b"db",
        ".env": "TOKEN=x\n", "keys/id_rsa": "k\n", "credentials.json": "{}\n",
    })
    (root / "train.py").chmod(0o755)
    return root


def probe(root: Path, rules: Rules | None = None) -> dict:
    return probe_directory(root, rules or Rules(), tuple(root / name for name in LOCAL_STATE))


def paths(section: dict) -> list[str]:
    return [f["path"] for f in section["files"]]


def test_the_walk_keeps_code_and_leaves_out_venvs_local_state_and_caches(tmp_path):
    section = probe(project(tmp_path / "p"))
    assert section["kind"] == "directory" and section["root"] == str((tmp_path / "p").resolve())
    assert paths(section) == ["data/a.csv", "helpers.py", "train.py"]
    assert section["withheld"] == [".env", "credentials.json", "keys/id_rsa"]
    train = next(f for f in section["files"] if f["path"] == "train.py")
    assert train == {"path": "train.py", "size": 15, "mode": "755",
                     "sha256": "sha256:" + hashlib.sha256(b"import helpers\n").hexdigest()}
    assert section["total_bytes"] == 15 + 6 + 4


def test_ignore_files_and_their_re_includes_apply(tmp_path):
    root = write(project(tmp_path / "p"), {
        ".dockerignore": "data\n*.log\n", ".envlockignore": "!data/keep.csv\nnotes/\n",
        "data/keep.csv": "k\n", "run.log": "l\n", "notes/n.md": "n\n"})
    assert paths(probe(root)) == [".dockerignore", ".envlockignore", "data/keep.csv",
                                  "helpers.py", "train.py"]


def test_the_config_deny_list_withholds_by_name_and_by_path(tmp_path):
    root = write(project(tmp_path / "p"), {"model.ckpt": b"w", "private/plan.md": "p\n"})
    section = probe(root, Rules(deny=("*.ckpt", "private")))
    assert "model.ckpt" in section["withheld"] and "private" in section["withheld"]
    assert not any(p.startswith("private") or p.endswith(".ckpt") for p in paths(section))


def test_symlinks_are_recorded_not_followed(tmp_path):
    root = project(tmp_path / "p")
    (root / "latest.py").symlink_to("train.py")
    (root / "data_link").symlink_to("data", target_is_directory=True)
    section = probe(root)
    assert section["symlinks"] == [{"path": "data_link", "target": "data"},
                                   {"path": "latest.py", "target": "train.py"}]
    assert paths(section) == ["data/a.csv", "helpers.py", "train.py"]


def test_the_same_tree_gives_the_same_section_whatever_the_directory_or_umask(tmp_path):
    old = os.umask(0o077)
    try:
        first = probe(project(tmp_path / "one"))
    finally:
        os.umask(0o022)
    try:
        second = probe(project(tmp_path / "two" / "deeper"))
    finally:
        os.umask(old)
    assert {**first, "root": ""} == {**second, "root": ""}


def test_over_the_cap_names_the_five_largest_files_and_how_to_exclude_them(tmp_path):
    root = write(tmp_path / "p", {f"f{i}.bin": b"x" * (1000 * i) for i in range(1, 8)})
    with pytest.raises(UsageError) as caught:
        probe(root, Rules(max_size=5000))
    message = str(caught.value)
    assert "28000 B" not in message and "27.3 KiB" in message and "4.9 KiB limit" in message
    assert "largest: f7.bin (6.8 KiB), f6.bin (5.9 KiB), f5.bin (4.9 KiB), f4.bin (3.9 KiB), " \
           "f3.bin (2.9 KiB)" in message
    assert "f2.bin" not in message and "add them to .envlockignore" in message
    assert "\n" not in message


@pytest.mark.parametrize("text, size", [("1g", 1024 ** 3), ("256MiB", 256 * 1024 ** 2),
                                        ("1.5G", 3 * 1024 ** 3 // 2), ("500k", 512000),
                                        ("1000", 1000), (2048, 2048), ("64 mb", 64 * 1024 ** 2)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_a_usage_error():
    with pytest.raises(UsageError, match="512m"):
        parse_size("lots")


# ---------------------------------------------------------------- materialize and pack

def directory_lock(root: Path):
    return make_lock(git=None, code=probe(root))


def test_the_section_round_trips_through_the_lockfile(tmp_path):
    lock = directory_lock(project(tmp_path / "p"))
    again = lockfile.loads(lockfile.dumps(lock))
    assert again.code == lock.code and again.lock_digest == lock.lock_digest
    assert again.project_root == lock.code["root"]


def test_materialize_restores_files_modes_and_symlinks(tmp_path):
    root = project(tmp_path / "p")
    (root / "latest.py").symlink_to("train.py")
    dest = tmp_path / "out"
    dest.mkdir()
    materialize(directory_lock(root), root, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == \
        ["data", "data/a.csv", "helpers.py", "latest.py", "train.py"]
    assert (dest / "train.py").stat().st_mode & 0o777 == 0o755
    assert (dest / "helpers.py").stat().st_mode & 0o777 == 0o644
    assert os.readlink(dest / "latest.py") == "train.py"


def test_a_file_changed_since_the_lock_is_an_error_naming_it(tmp_path):
    root = project(tmp_path / "p")
    lock = directory_lock(root)
    (root / "data" / "a.csv").write_text("9,9\n")
    with pytest.raises(CodeError) as caught:
        code_context(lock, None)
    assert "data/a.csv" in str(caught.value) and "changed since the lock" in str(caught.value)
    assert "capture again" in str(caught.value)


def test_a_file_gone_since_the_lock_is_an_error_naming_it(tmp_path):
    root = project(tmp_path / "p")
    lock = directory_lock(root)
    (root / "helpers.py").unlink()
    with pytest.raises(CodeError, match="helpers.py, recorded in the lock, is missing"):
        code_context(lock, root)


def test_a_lock_naming_a_file_outside_the_project_is_refused(tmp_path):
    root = project(tmp_path / "p")
    code = probe(root)
    code["files"][0] = {**code["files"][0], "path": "../escape.py"}
    with pytest.raises(CodeError, match="outside the project"):
        code_context(make_lock(git=None, code=code), root)


def test_the_code_layer_is_the_same_bytes_whatever_the_umask(tmp_path):
    lock = directory_lock(project(tmp_path / "p"))
    old = os.umask(0o077)
    try:
        first = code_context(lock, None)
    finally:
        os.umask(0o002)
    try:
        second = code_context(lock, None)
    finally:
        os.umask(old)
    assert first.digest == second.digest and first.files == 3


def test_envlockignore_also_applies_when_packing_a_tree(tmp_path):
    root = write(tmp_path / "t", {"a.py": "a\n", "big/w.bin": b"w", ".envlockignore": "big/\n"})
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(pack(root).tar)) as archive:
        names = archive.getnames()
    assert "workspace/a.py" in names and not any("big" in n for n in names)


def test_a_lock_without_any_code_says_to_use_env_only(tmp_path):
    with pytest.raises(UsageError, match="--env-only"):
        materialize(make_lock(git=None), tmp_path, tmp_path / "out")


# ---------------------------------------------------------------- diff

def test_diff_shows_files_added_removed_and_changed_as_code_not_drift(tmp_path):
    root = project(tmp_path / "p")
    old = directory_lock(root)
    write(root, {"data/a.csv": "3,4\n", "new.py": "n\n"})
    (root / "helpers.py").unlink()
    (root / "train.py").chmod(0o644)
    new = dataclasses.replace(directory_lock(root), code={**probe(root), "root": "/elsewhere"})
    changes = {c.field: (c.old, c.new) for c in diff_locks(old, new).changes
               if c.category == "code"}
    assert set(changes) == {"data/a.csv", "helpers.py", "new.py", "train.py"}
    assert changes["new.py"][0] is None and changes["helpers.py"][1] is None
    assert changes["train.py"][0].endswith(" 755") and changes["train.py"][1].endswith(" 644")
    assert not diff_locks(old, new).env_changed


def test_diff_between_a_repository_and_a_directory(tmp_path):
    result = diff_locks(make_lock(), directory_lock(project(tmp_path / "p")))
    fields = {(c.category, c.field, c.old, c.new) for c in result.changes}
    assert ("git", "repository", True, False) in fields
    assert ("code", "directory", False, True) in fields


# ---------------------------------------------------------------- config

@pytest.fixture
def configured(tmp_path, monkeypatch):
    for name in ("ENVLOCK_CONFIG", "ENVLOCK_CODE_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_size_cap_comes_from_flag_env_file_or_default(configured, monkeypatch):
    from envlock import config

    assert config.load(configured).code_rules().max_size == 256 * 1024 ** 2
    (configured / "pyproject.toml").write_text(
        '[tool.envlock]\ncode_max_size = 1048576\ndeny = ["*.ckpt"]\n')
    rules = config.load(configured).code_rules()
    assert rules == Rules(deny=("*.ckpt",), max_size=1024 ** 2)
    monkeypatch.setenv("ENVLOCK_CODE_MAX_SIZE", "2m")
    assert config.load(configured).code_rules().max_size == 2 * 1024 ** 2
    assert config.load(configured).code_rules("1g").max_size == 1024 ** 3


def test_a_bad_size_in_the_config_is_one_line_naming_the_file(configured):
    from envlock import config

    (configured / "envlock.yaml").write_text("code_max_size: huge\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(configured)
    assert "envlock.yaml: code_max_size 'huge' is not understood" in str(caught.value)


# ---------------------------------------------------------------- show and diff text

def test_show_and_diff_text_summarize_the_code_section(tmp_path):
    from envlock.cli.render import diff_text, lock_summary

    root = project(tmp_path / "p")
    old = directory_lock(root)
    summary = lock_summary(old, "lock")
    assert f"directory {root.resolve()}: 3 files, 25 B, 3 withheld" in summary
    write(root, {"helpers.py": "X = 2\n"})
    text = diff_text(diff_locks(old, directory_lock(root)), "a", "b")
    assert "code:" in text and "helpers.py" in text
    assert len(next(line for line in text.splitlines() if "helpers.py" in line)) < 80


def test_a_moved_project_packs_the_same_code_from_code_dir(tmp_path):
    import shutil

    root = project(tmp_path / "p")
    lock = directory_lock(root)
    before = code_context(lock, None).digest
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved, symlinks=True)
    shutil.rmtree(root)
    assert code_context(lock, moved).digest == before
    with pytest.raises(UsageError, match="no such directory"):
        code_context(lock, None)


def test_without_git_installed_a_project_outside_git_is_simply_not_a_repository(
        tmp_path, monkeypatch):
    """A pod or CI runner without git: capture packs the directory, it does not fail."""
    import shutil as shutil_module

    from envlock.errors import EnvlockError
    from envlock.snapshot.git import Repo

    monkeypatch.setattr(shutil_module, "which", lambda name, *a, **k: None)
    monkeypatch.delenv("GIT_DIR", raising=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert Repo.discover(plain) is None
    (tmp_path / "repo" / ".git").mkdir(parents=True)  # a work tree git would find
    (tmp_path / "repo" / "sub").mkdir()
    with pytest.raises(EnvlockError, match="git is not installed"):
        Repo.discover(tmp_path / "repo" / "sub")
