"""The code layer's content: the git-tracked files at the locked commit, the locked
uncommitted diff applied, and the locked untracked files (hash-checked) — or, for a
project outside git, the files the lock's ``code`` section lists (hash-checked); never
``.git``, ignored files or secret files (built-in deny list plus ``.dockerignore`` and
``.envlockignore``, and every file whose content detect-secrets flags: see
``snapshot.secrets``; ``--allow-file`` and the files the lock kept that way stay).

The tree is packed as a deterministic tar (sorted, fixed times and owner), whose
sha256 is the ``code_digest`` that lets an unchanged run reuse its image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.adapters import proc
from envlock.errors import EnvlockError, UsageError
from envlock.image.layer import normalized_mode
from envlock.image.render import USER_ID, WORKDIR
from envlock.model.ignore import ignore_patterns, ignored
from envlock.model.lockfile import Lock
from envlock.model.locksections import CodeSection
from envlock.model.redact import is_secret_file


class CodeError(EnvlockError):
    """The locked code state cannot be reproduced from the given directory."""


@dataclass(frozen=True)
class CodeContext:
    tar: bytes
    digest: str
    files: int
    excluded: tuple[str, ...]
    #: The content scan of the packed files: withheld (path, kind), allowed, unscanned.
    secret_scan: dict[str, Any] | None = None


def _git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    out = proc.run(["git", "-C", str(root), *args], input=input, timeout=600)
    if out.returncode != 0:
        tail = out.stderr.decode(errors="replace").strip().splitlines()
        raise CodeError(f"git {args[0]} failed in {root}: {tail[-1] if tail else out.returncode}")
    return out.stdout


#: Ignore files read in this order (same syntax; the later file's rules win on a tie).
def _extract(tar_bytes: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # Python < 3.10.12: git archive output of the user's own repository
            archive.extractall(dest)  # noqa: S202


def materialize(lock: Lock, code_dir: Path, dest: Path) -> None:
    """Recreate the locked work tree of ``code_dir``'s repository under ``dest`` (outside
    git: the locked files of the directory ``code_dir``, each checked against its sha256)."""
    if lock.code:
        return _materialize_directory(lock.code, code_dir, dest)
    git = lock.git
    if not git:
        raise UsageError("the lock records no code (it was taken with --no-git), so its code "
                         "layer cannot be built", "lock again without --no-git, or build "
                         "the environment image alone with --env-only")
    if not git.get("commit"):
        raise UsageError("the lock has no git commit, so its code cannot be rebuilt",
                         "lock inside a git repository with at least one commit")
    root = Path(_git(code_dir, "rev-parse", "--show-toplevel").decode().strip())
    commit = git["commit"]
    if proc.run(["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"]).returncode:
        raise CodeError(f"commit {commit[:12]} is not in {root}",
                        "fetch it (git fetch) or pass --code with a clone that has it")
    _extract(_git(root, "archive", "--format=tar", commit), dest)
    for sub in git.get("submodules") or []:
        sub_root = root / sub["path"]
        if (sub_root / ".git").exists():
            target = dest / sub["path"]
            target.mkdir(parents=True, exist_ok=True)
            _extract(_git(sub_root, "archive", "--format=tar", sub["commit"]), target)
    if diff := git.get("diff"):
        patch = diff.encode() if git.get("diff_encoding") != "base64" else base64.b64decode(diff)
        _apply(dest, patch)
    for item in git.get("untracked") or []:
        _copy_untracked(root, dest, item)


def _apply(dest: Path, patch: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".patch", delete=False) as handle:
        handle.write(patch)
    try:
        # Outside any repository (the ceiling stops discovery), git apply acts as patch -p1.
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(dest.parent)}
        out = proc.run(["git", "apply", "--binary", "--whitespace=nowarn", handle.name],
                       cwd=str(dest), env=env)
    finally:
        os.unlink(handle.name)
    if out.returncode != 0:
        tail = out.stderr.decode(errors="replace").strip().splitlines()
        raise CodeError(f"the locked diff does not apply to the locked commit: "
                        f"{tail[-1] if tail else out.returncode}")


def _copy_untracked(root: Path, dest: Path, item: dict[str, object]) -> None:
    rel = str(item["path"])
    source = root / rel
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if item.get("symlink"):
        target.symlink_to(str(item["symlink"]))
        return
    try:
        data = source.read_bytes()
    except OSError:
        raise CodeError(f"untracked file {rel} recorded in the lock is gone from {root}",
                        "restore it, or lock again") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != item.get("sha256"):
        raise CodeError(f"untracked file {rel} changed since the lock was taken",
                        "lock again (envlock lock) so the lock matches the code")
    target.write_bytes(data)
    target.chmod(source.stat().st_mode & 0o777)


def _materialize_directory(code: CodeSection, source: Path, dest: Path) -> None:
    for item in code.get("files") or []:
        _copy_verified(source, dest, item)
    for link in code.get("symlinks") or []:
        target = _inside(dest, str(link["path"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(str(link["target"]))
    for directory in [dest, *(p for p in dest.rglob("*") if p.is_dir() and not p.is_symlink())]:
        directory.chmod(0o755)  # whatever the umask: the same layer bytes


def _inside(dest: Path, rel: str) -> Path:
    if rel.startswith("/") or ".." in rel.split("/"):
        raise CodeError(f"the lock lists a file outside the project: {rel}",
                        "lock again (envlock lock / envlock capture)")
    return dest / rel


def _copy_verified(source: Path, dest: Path, item: dict[str, Any]) -> None:
    """Copy one locked file, hashing it on the way; a changed or missing file is an error."""
    rel = str(item["path"])
    target = _inside(dest, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with (source / rel).open("rb") as src, target.open("wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except OSError as exc:
        problem = "is missing from" if isinstance(exc, FileNotFoundError) else \
            f"cannot be read ({exc.strerror}) in"
        raise CodeError(f"{rel}, recorded in the lock, {problem} {source}",
                        "restore it, or capture again (envlock capture / envlock lock) so "
                        "the lock matches the code") from None
    if "sha256:" + digest.hexdigest() != item.get("sha256"):
        raise CodeError(f"{rel} in {source} changed since the lock was taken (its sha256 "
                        "differs)", "restore it, or capture again (envlock capture / envlock "
                        "lock) so the lock matches the code")
    target.chmod(0o755 if str(item.get("mode")) == "755" else 0o644)


def pack(tree: Path, extra_deny: tuple[str, ...] = (), allow: tuple[str, ...] = ()
         ) -> CodeContext:
    """Deterministic tar of ``tree`` as ``workspace/…`` (extracted at /), minus secret files
    (by name, or by content unless ``allow`` names them) and what ``.dockerignore`` /
    ``.envlockignore`` exclude."""
    from envlock.snapshot.secrets import Scan

    scan = Scan(allow)
    patterns = ignore_patterns(tree)
    buffer = io.BytesIO()
    excluded: list[str] = []
    files = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        # Rooted at / with /workspace itself as the first entry: the engine then gives the
        # directory this entry's time (an entry "." is not applied), so the code layer is
        # the same bytes from build to build.
        top = WORKDIR.strip("/")
        root = tarfile.TarInfo(top)
        root.type, root.mode, root.uid, root.gid, root.mtime = tarfile.DIRTYPE, 0o755, \
            USER_ID, USER_ID, 0
        archive.addfile(root)
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if rel == ".git" or rel.startswith(".git/"):
                continue
            if is_secret_file(rel, extra_deny) or ignored(rel, patterns):
                excluded.append(rel)
                continue
            if any(rel.startswith(e + "/") for e in excluded):
                continue
            if path.is_file() and not path.is_symlink():
                finding = scan.file(path, rel)
                if finding:
                    scan.withhold(finding)
                    excluded.append(rel)
                    continue
            info = archive.gettarinfo(str(path), arcname=f"{top}/{rel}")
            info.uid = info.gid = USER_ID
            info.uname = info.gname = ""
            info.mtime = 0
            if not info.issym():  # modes as the layer has them: the umask never shows
                info.mode = normalized_mode(info.mode, info.isdir())
            if info.isfile():
                files += 1
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    data = buffer.getvalue()
    return CodeContext(tar=data, digest="sha256:" + hashlib.sha256(data).hexdigest(),
                       files=files, excluded=tuple(excluded), secret_scan=scan.record())


def commit_time(lock: Lock, code_dir: Path | None) -> int | None:
    """The committer time of the locked commit (an input of the build, unlike the clock);
    None when the repository at hand does not have it."""
    commit = (lock.git or {}).get("commit")
    root = code_dir or Path(lock.project_root or ".")
    if not commit or not root.is_dir():
        return None
    out = proc.run(["git", "-C", str(root), "show", "-s", "--format=%ct", commit], timeout=60)
    text = out.stdout.decode(errors="replace").strip()
    return int(text) if out.returncode == 0 and text.isdigit() else None


def code_context(lock: Lock, code_dir: Path | None, extra_deny: tuple[str, ...] = (),
                 allow: tuple[str, ...] = ()) -> CodeContext:
    """The code layer for ``lock``; ``code_dir`` defaults to the locked repository root
    (outside git: the locked directory). ``allow``: files kept although their content looks
    like a secret (``--allow-file``), beside those the lock itself kept so."""
    from envlock.snapshot.secrets import allow_patterns, recorded_allow

    directory = code_dir or Path(lock.project_root or ".")
    if not directory.is_dir():
        raise UsageError(f"--code {directory}: no such directory",
                         "pass the experiment's directory (for git: a clone that has the "
                         "locked commit)")
    root = Path(lock.project_root) if lock.project_root and code_dir is None else directory
    kept = allow_patterns(allow, root) + recorded_allow(lock.git or lock.code)
    with tempfile.TemporaryDirectory(prefix="envlock-code-") as tmp:
        materialize(lock, directory, Path(tmp))
        return pack(Path(tmp), extra_deny, kept)
