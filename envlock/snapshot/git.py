"""Git state of the experiment's code: commit, branch, remote, the full uncommitted
diff, untracked files with content hashes, submodule commits.

Read with the ``git`` CLI through envlock's one subprocess wrapper (four calls at most,
the first three side by side, then the diff; GitPython's import alone took 33 ms of the
150 ms a whole ``envlock lock`` may take).
Not a repository is a normal case (``None``). Credentials embedded in remote URLs are
stripped, and files that hold secrets (``.env``, keys, ...) are left out of the diff
and the untracked list; their names are reported as *withheld*. Untracked files that
``.dockerignore`` / ``.envlockignore`` exclude are not listed: the code layer never holds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters import proc
from envlock.errors import ProbeError
from envlock.model.redact import is_secret_file, strip_url_credentials
from envlock.snapshot import _Background

if TYPE_CHECKING:
    from envlock.snapshot.secrets import Finding, Scan

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class Repo:
    """A work tree and the git commands envlock needs from it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def discover(cls, path: str | Path) -> Repo | None:
        if shutil.which("git") is None:
            if not _inside_a_work_tree(Path(path)):
                return None  # a pod or runner without git, a project outside git: fine
            raise ProbeError("git is not installed, so the code's state cannot be recorded",
                             "install git, or pass --no-git")
        out = proc.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], timeout=60)
        if out.returncode != 0 or not out.stdout.strip():
            return None  # not a repository, or a bare one
        return cls(Path(out.stdout.decode().strip()))

    def git(self, *args: str) -> bytes:
        out = proc.run(["git", "-C", str(self.root), *args], timeout=300)
        if out.returncode != 0:
            message = out.stderr.decode(errors="replace").strip().splitlines()
            raise ProbeError(f"git {args[0]} failed in {self.root}: "
                             f"{message[-1] if message else 'exit ' + str(out.returncode)}")
        return out.stdout


def _inside_a_work_tree(path: Path) -> bool:
    """A ``.git`` (directory, or file of a worktree/submodule) here or in a parent, or
    ``GIT_DIR`` set: what git itself would find, without git."""
    if os.environ.get("GIT_DIR"):
        return True
    current = path.absolute()
    return any((folder / ".git").exists() for folder in (current, *current.parents))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _remote(repo: Repo) -> tuple[str | None, str | None]:
    out = proc.run(["git", "-C", str(repo.root), "config", "--get-regexp", r"^remote\..*\.url$"])
    urls = {}
    for line in out.stdout.decode(errors="replace").splitlines():
        key, _, url = line.partition(" ")
        urls[key[len("remote."):-len(".url")]] = url
    if not urls:
        return None, None
    name = "origin" if "origin" in urls else sorted(urls)[0]
    return name, strip_url_credentials(urls[name])


def _status(repo: Repo) -> tuple[str | None, str | None, dict[str, list[str]]]:
    """HEAD commit, branch, and paths changed in the index / work tree / untracked."""
    raw = repo.git("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    head: str | None = None
    branch: str | None = None
    out: dict[str, list[str]] = {"staged": [], "unstaged": [], "untracked": []}
    entries = iter(raw.split(b"\0"))
    for entry in entries:
        line = entry.decode("utf-8", "surrogateescape")
        if line.startswith("# branch.oid "):
            head = None if line.endswith("(initial)") else line.split()[-1]
        elif line.startswith("# branch.head "):
            branch = None if line.endswith("(detached)") else line.split(" ", 2)[2]
        elif line.startswith("? "):
            out["untracked"].append(line[2:])
        elif line[:2] in ("1 ", "2 ", "u "):
            fields = line.split(" ", {"1": 8, "2": 9, "u": 10}[line[0]])
            xy, path = fields[1], fields[-1]
            if line[0] == "2":
                next(entries, None)  # a rename or copy is followed by its source path
            if xy[0] != ".":
                out["staged"].append(path)
            if xy[1] != ".":
                out["unstaged"].append(path)
    return head, branch, out


def _diff(repo: Repo, head: str | None, changed: list[str], skip: set[str],
          scan: Scan | None = None) -> tuple[str, str | None, list[str]]:
    """The diff against HEAD, without secret files (by name) and the hunks where ``scan``
    finds a secret by content (a whole file when it is binary, all its hunks go, or there
    is no commit to number the lines against)."""
    withheld = sorted({p for p in changed if is_secret_file(p)})
    if not changed:
        return "", None, withheld
    findings = _scan_changed(repo, changed, set(withheld) | skip, scan)
    whole = set(findings) if head is None else set()
    excludes = [f":(exclude,literal){p}" for p in sorted(set(withheld) | skip | whole)]
    base = head or EMPTY_TREE
    args = ["diff", "--binary", "--no-color", "--no-ext-diff", base, "--", "."] + excludes
    if head is None:
        args.insert(1, "--cached")
    raw = repo.git(*args)
    if findings:
        from envlock.model.patch import withhold

        raw, outcome = withhold(raw, {p: f.lines for p, f in findings.items() if p not in whole})
        for path, finding in sorted(findings.items()):
            hunks = outcome.get(path, [])
            if path in whole or hunks is None:
                withheld.append(path)
            if path in whole or hunks is None or hunks:
                assert scan is not None
                scan.withhold(finding, hunks or None)
    try:
        return raw.decode("utf-8"), None, withheld
    except UnicodeDecodeError:
        import base64

        return base64.b64encode(raw).decode(), "base64", withheld


def _scan_changed(repo: Repo, changed: list[str], left_out: set[str], scan: Scan | None
                  ) -> dict[str, Finding]:
    """Secrets in the work-tree version of each changed file (deleted ones have none)."""
    if scan is None:
        return {}
    found = {}
    for rel in changed:
        file = repo.root / rel
        if rel in left_out or file.is_symlink() or not file.is_file():
            continue
        finding = scan.file(file, rel)
        if finding:
            found[rel] = finding
    return found


def _submodules(repo: Repo) -> list[dict[str, str]]:
    if not (repo.root / ".gitmodules").exists():
        return []
    out = []
    for line in repo.git("submodule", "status", "--recursive").decode().splitlines():
        state, rest = line[:1], line[1:].split()
        if len(rest) >= 2:
            status = {"-": "not initialized", "+": "differs from recorded",
                      "U": "conflict"}.get(state, "clean")
            out.append({"path": rest[1], "commit": rest[0], "status": status})
    return out


#: Queries started by the CLI before it finished importing (see prefetch), by directory.
_PREFETCHED: dict[str, tuple[_Background, _Background, _Background]] = {}


def _queries(path: str | Path) -> tuple[_Background, _Background, _Background]:
    """rev-parse, status and config of ``path``, side by side. status and config answer the
    same from any directory of the work tree (porcelain paths are relative to its root);
    their answers are only used when rev-parse finds a repository."""
    here = Repo(Path(path))
    return (_Background(lambda: Repo.discover(path)), _Background(lambda: _status(here)),
            _Background(lambda: _remote(here)))


def prefetch(path: str | Path) -> None:
    """Start the read-only queries of :func:`probe_git` early: the CLI calls this before
    importing typer, so that git runs on the other core meanwhile. An unused prefetch is
    left to finish in its daemon threads."""
    _PREFETCHED[os.path.abspath(path)] = _queries(path)


def probe_git(path: str | Path = ".", exclude: tuple[str | Path, ...] = (),
              allow: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The git section of the lock for the repository containing ``path``, or None.
    ``exclude``: files that are not the experiment's code (the lockfile being written).
    ``allow``: files kept although their content looks like a secret (``--allow-file``)."""
    key = os.path.abspath(path)
    found, status, remote = _PREFETCHED.pop(key) if key in _PREFETCHED else _queries(path)
    repo = found.result()
    if repo is None:
        return None
    section = _worktree_section(repo, status.result(), exclude, allow)
    section["remote"], section["remote_url"] = remote.result()
    return section


def _worktree_section(repo: Repo, state: tuple[str | None, str | None, dict[str, list[str]]],
                      exclude: tuple[str | Path, ...], allow: tuple[str, ...] = ()
                      ) -> dict[str, Any]:
    """The git section but for the remote, from ``_status``'s answer: commit, branch, diff,
    untracked, submodules."""
    from envlock.model.ignore import ignore_patterns, ignored
    from envlock.snapshot.secrets import Scan, allow_patterns

    head, branch, status = state
    skip = {rel for rel in (_relative(repo.root, p) for p in exclude) if rel}
    status = {k: [p for p in v if not any(p == s or p.startswith(s + "/") for s in skip)]
              for k, v in status.items()}
    changed = sorted(set(status["staged"]) | set(status["unstaged"]))
    scan = Scan(allow_patterns(allow, repo.root))
    diff, encoding, withheld = _diff(repo, head, changed, skip, scan)
    untracked: list[dict[str, Any]] = []
    patterns = ignore_patterns(repo.root)  # never packed, so neither hashed nor needed later
    for rel in sorted(status["untracked"]):
        if ignored(rel, patterns):
            continue
        if is_secret_file(rel):
            withheld.append(rel)
            continue
        file = repo.root / rel
        if file.is_symlink():
            untracked.append({"path": rel, "symlink": str(file.readlink())})
        elif file.is_file():
            entry = _untracked_file(file, rel, scan)
            if entry is None:
                withheld.append(rel)
            else:
                untracked.append(entry)
    section: dict[str, Any] = {
        "root": str(repo.root),
        "commit": head,
        "branch": branch,
        "remote": None,  # filled in by probe_git (keeps the key order)
        "remote_url": None,
        "dirty": bool(changed or untracked),
        "changes": {k: len(v) for k, v in status.items()},
        "diff_sha256": "sha256:" + hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "diff": diff or None,
        "untracked": untracked,
        "withheld": sorted(set(withheld)),
        **({"secret_scan": scan.record()} if scan.record() else {}),
        "submodules": _submodules(repo),
    }
    if encoding:
        section["diff_encoding"] = encoding
    return section


def _untracked_file(file: Path, rel: str, scan: Scan) -> dict[str, Any] | None:
    """An untracked file's entry (sha256, size), read once for the hash and the scan;
    None when its content holds a secret (it is withheld)."""
    from envlock.snapshot.secrets import MAX_BYTES

    size = file.stat().st_size
    if size > MAX_BYTES:
        scan.file(file, rel)  # records why it was not scanned
        return {"path": rel, "sha256": sha256_file(file), "size": size}
    data = file.read_bytes()
    finding = scan.file(file, rel, data)
    if finding:
        scan.withhold(finding)
        return None
    return {"path": rel, "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def _relative(root: Path, path: str | Path) -> str | None:
    try:
        return Path(path).absolute().resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def repo_state(path: str | Path) -> tuple[str | None, bool | None]:
    """Commit and dirtiness of the repository holding ``path`` (for editable packages)."""
    repo = Repo.discover(path)
    if repo is None:
        return None, None
    head, _, status = _status(repo)
    return head, any(status.values())
