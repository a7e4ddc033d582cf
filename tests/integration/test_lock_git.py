"""Git state on real repositories: the diff reproduces the work tree; secrets never leak."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from envlock.model import lockfile
from tests.conftest import git, init_repo, run_envlock

TOKEN = "ghp_S3cr3tT0kenValue1234567890"
BINARY = bytes(range(256)) * 4


@pytest.fixture
def repo(tmp_path):
    path = init_repo(tmp_path / "exp", {
        "train.py": "print('train')\n", "conf.yaml": "lr: 0.1\n", "weights.bin": BINARY,
        ".gitignore": "outputs/\n*.log\n", "tracked/.env": "A=1\n",
    })
    git(path, "remote", "add", "origin", f"https://oauth2:{TOKEN}@github.com/org/exp.git")
    (path / "conf.yaml").write_text("lr: 0.2\n")                       # unstaged
    (path / "train.py").write_text("print('train v2')\n")
    git(path, "add", "train.py")                                        # staged
    (path / "weights.bin").write_bytes(BINARY[::-1])                    # binary change
    (path / "tracked" / ".env").write_text("A=2\nDB_PASSWORD=hunter2\n")  # tracked secret
    (path / "notes.md").write_text("untracked notes\n")                 # untracked
    (path / "data").mkdir()
    (path / "data" / "split.csv").write_text("a,b\n1,2\n")
    (path / ".env").write_text("WANDB_API_KEY=abc\n")                   # untracked secret
    (path / "outputs").mkdir()
    (path / "outputs" / "model.pt").write_text("ignored\n")             # ignored
    return path


def lock_repo(repo, tmp_path, *extra, env=None):
    out = tmp_path / "lock.yaml"
    result = run_envlock("lock", "--project", str(repo), "-o", str(out), "--no-gpu", *extra,
                         env=env, check=True)
    return lockfile.load(out), out, result


def test_commit_branch_remote_and_changes(repo, tmp_path):
    lock, _, _ = lock_repo(repo, tmp_path)
    g = lock.git
    assert g["root"] == str(repo) and g["commit"] == git(repo, "rev-parse", "HEAD")
    assert g["branch"] == "main" and g["remote"] == "origin"
    assert g["remote_url"] == "https://github.com/org/exp.git"
    assert g["dirty"] is True
    assert g["changes"] == {"staged": 1, "unstaged": 3, "untracked": 3}


def test_diff_applied_to_the_commit_reproduces_the_tracked_files(repo, tmp_path):
    lock, _, _ = lock_repo(repo, tmp_path)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", lock.git["commit"])
    patch = tmp_path / "changes.patch"
    patch.write_text(lock.git["diff"])
    git(clone, "apply", "--binary", str(patch))
    for name in ("train.py", "conf.yaml", "weights.bin"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes(), name


def test_untracked_files_are_listed_with_hashes_ignored_and_secret_ones_are_not(repo, tmp_path):
    import hashlib

    lock, _, result = lock_repo(repo, tmp_path)
    untracked = {u["path"]: u for u in lock.git["untracked"]}
    assert set(untracked) == {"notes.md", "data/split.csv"}
    digest = hashlib.sha256((repo / "notes.md").read_bytes()).hexdigest()
    assert untracked["notes.md"]["sha256"] == f"sha256:{digest}"
    assert lock.git["withheld"] == [".env", "tracked/.env"]
    assert "may hold secrets: .env, tracked/.env" in result.stderr


def test_untracked_files_an_envlockignore_excludes_are_not_listed(repo, tmp_path):
    (repo / ".envlockignore").write_text("data/\n")
    lock, _, _ = lock_repo(repo, tmp_path)
    assert {u["path"] for u in lock.git["untracked"]} == {"notes.md", ".envlockignore"}


def test_no_secret_reaches_the_lock_or_any_output(repo, tmp_path):
    env = {"TORCH_HUB_TOKEN": "tok-999", "NCCL_SOCKET_IFNAME": "eth0", "MY_API_KEY": "k-777",
           "CUDA_PASSWORD_X": "pw-555"}
    lock, path, result = lock_repo(repo, tmp_path, "--json", "--command",
                                   f"python train.py --token {TOKEN}", env=env)
    shown = run_envlock("show", str(path), "--json")
    everything = path.read_text() + result.stdout + result.stderr + shown.stdout + shown.stderr
    for secret in (TOKEN, "tok-999", "k-777", "pw-555", "hunter2", "WANDB_API_KEY=abc"):
        assert secret not in everything, secret
    assert lock.runtime["env"]["NCCL_SOCKET_IFNAME"] == "eth0"
    assert lock.runtime["command"] == "python train.py --token '***'"
    assert json.loads(result.stdout)["result"]["dirty"] is True


def test_binary_unsafe_diff_is_stored_base64(tmp_path):
    repo = init_repo(tmp_path / "latin", {"old.txt": "caf\xe9\n".encode("latin-1")})
    (repo / "old.txt").write_bytes("na\xefve\n".encode("latin-1"))
    lock, _, _ = lock_repo(repo, tmp_path)
    assert lock.git["diff_encoding"] == "base64"
    assert b"na\xefve" in base64.b64decode(lock.git["diff"])


def test_submodule_commits(tmp_path):
    sub = init_repo(tmp_path / "sub", {"lib.py": "x = 1\n"})
    top = init_repo(tmp_path / "top", {"main.py": "import lib\n"})
    git(top, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(top, "commit", "-q", "-m", "add submodule")
    lock, _, _ = lock_repo(top, tmp_path)
    assert lock.git["submodules"] == [{"path": "vendor/sub",
                                       "commit": git(sub, "rev-parse", "HEAD"),
                                       "status": "clean"}]
    assert lock.git["dirty"] is False


def test_not_a_repository_is_normal_with_a_warning(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("print(1)\n")
    lock, _, result = lock_repo(plain, tmp_path)
    assert lock.git is None
    assert [f["path"] for f in lock.code["files"]] == ["train.py"]  # packed by content
    assert "not a git repository: recorded its 1 file (9 B)" in result.stderr
    none, _, _ = lock_repo(plain, tmp_path, "--no-code")
    assert none.git is None and none.code is None


def test_repository_without_commits(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text("a = 1\n")
    git(repo, "add", "a.py")
    lock, _, _ = lock_repo(repo, tmp_path)
    assert lock.git["commit"] is None and "a.py" in lock.git["diff"]


def test_the_lockfile_and_envlock_state_are_not_part_of_the_code(tmp_path):
    repo = init_repo(tmp_path / "r", {"a.py": "a = 1\n"})
    (repo / ".envlock" / "runs" / "x").mkdir(parents=True)
    (repo / ".envlock" / "runs" / "x" / "envlock.lock.yaml").write_text("old\n")
    (repo / "mlflow.db").write_bytes(b"SQLite format 3\0")
    (repo / "mlruns" / "0").mkdir(parents=True)
    (repo / "mlruns" / "0" / "meta.yaml").write_text("artifact_location: x\n")
    out = repo / "envlock.lock.yaml"
    run_envlock("lock", "--project", str(repo), "-o", str(out), "--no-gpu", check=True)
    run_envlock("lock", "--project", str(repo), "-o", str(out), "--no-gpu", check=True)
    lock = lockfile.load(out)
    assert lock.git["untracked"] == [] and lock.git["dirty"] is False
