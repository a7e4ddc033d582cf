"""Git state of the experiment's code (GitPython): commit, branch, remote, the full
uncommitted diff, untracked files with content hashes, submodule commits.

Not a repository is a normal case (``None``). Credentials embedded in remote URLs
are stripped, and files that hold secrets (``.env``, keys, ...) are left out of the
diff and the untracked list; their names are reported as *withheld*.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from envlock.redact import is_secret_file, strip_url_credentials

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _open(path: str | Path) -> Any:
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _run(repo: Any, *args: str) -> bytes:
    return repo.git.execute(["git", *args], stdout_as_string=False,
                            strip_newline_in_stdout=False)


def _z_list(output: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in output.split(b"\0") if p]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _head(repo: Any) -> str | None:
    try:
        return str(repo.head.commit.hexsha)
    except ValueError:  # no commit yet
        return None


def _branch(repo: Any) -> str | None:
    try:
        return str(repo.active_branch.name)
    except TypeError:  # detached HEAD
        return None


def _remote(repo: Any) -> tuple[str | None, str | None]:
    remotes = {r.name: r for r in repo.remotes}
    if not remotes:
        return None, None
    name = "origin" if "origin" in remotes else sorted(remotes)[0]
    try:
        url = next(iter(remotes[name].urls), None)
    except Exception:  # noqa: BLE001 - a remote without url
        url = None
    return name, strip_url_credentials(url)


def _status(repo: Any) -> dict[str, list[str]]:
    """Paths changed in the index, in the work tree, and untracked (not ignored)."""
    out: dict[str, list[str]] = {"staged": [], "unstaged": [], "untracked": []}
    entries = _run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all").split(b"\0")
    skip_next = False
    for entry in entries:
        if skip_next or len(entry) < 4:
            skip_next = False
            continue
        x, y, path = chr(entry[0]), chr(entry[1]), entry[3:].decode("utf-8", "surrogateescape")
        if x == "?":
            out["untracked"].append(path)
            continue
        if x not in " !":
            out["staged"].append(path)
        if y != " ":
            out["unstaged"].append(path)
        skip_next = x in "RC"  # a rename is followed by its source path
    return out


def _diff(repo: Any, head: str | None, changed: list[str]) -> tuple[str, str | None, list[str]]:
    withheld = sorted({p for p in changed if is_secret_file(p)})
    if not changed:
        return "", None, withheld
    excludes = [f":(exclude,literal){p}" for p in withheld]
    base = head or EMPTY_TREE
    args = ["diff", "--binary", "--no-color", "--no-ext-diff", base, "--", "."] + excludes
    if head is None:
        args.insert(1, "--cached")
    raw = _run(repo, *args)
    try:
        return raw.decode("utf-8"), None, withheld
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64", withheld


def _submodules(repo: Any, root: Path) -> list[dict[str, str]]:
    if not (root / ".gitmodules").exists():
        return []
    out = []
    for line in _run(repo, "submodule", "status", "--recursive").decode().splitlines():
        state, rest = line[:1], line[1:].split()
        if len(rest) >= 2:
            status = {"-": "not initialized", "+": "differs from recorded",
                      "U": "conflict"}.get(state, "clean")
            out.append({"path": rest[1], "commit": rest[0], "status": status})
    return out


def probe_git(path: str | Path = ".") -> dict[str, Any] | None:
    """The git section of the lock for the repository containing ``path``, or None."""
    repo = _open(path)
    if repo is None or repo.bare:
        return None
    root = Path(repo.working_tree_dir)
    head = _head(repo)
    remote_name, remote_url = _remote(repo)
    status = _status(repo)
    changed = sorted(set(status["staged"]) | set(status["unstaged"]))
    diff, encoding, withheld = _diff(repo, head, changed)
    untracked = []
    for rel in sorted(status["untracked"]):
        if is_secret_file(rel):
            withheld.append(rel)
            continue
        file = root / rel
        if file.is_file() and not file.is_symlink():
            untracked.append({"path": rel, "sha256": sha256_file(file),
                              "size": file.stat().st_size})
        else:
            untracked.append({"path": rel, "symlink": str(file.readlink()) if file.is_symlink()
                              else None})
    section: dict[str, Any] = {
        "root": str(root),
        "commit": head,
        "branch": _branch(repo),
        "remote": remote_name,
        "remote_url": remote_url,
        "dirty": bool(changed or untracked),
        "changes": {k: len(v) for k, v in status.items()},
        "diff_sha256": "sha256:" + hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "diff": diff or None,
        "untracked": untracked,
        "withheld": sorted(set(withheld)),
        "submodules": _submodules(repo, root),
    }
    if encoding:
        section["diff_encoding"] = encoding
    return section


def repo_state(path: str | Path) -> tuple[str | None, bool | None]:
    """Commit and dirtiness of the repository holding ``path`` (for editable packages)."""
    repo = _open(path)
    if repo is None or repo.bare:
        return None, None
    try:
        return _head(repo), repo.is_dirty(untracked_files=True)
    finally:
        repo.close()
