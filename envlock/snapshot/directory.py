"""A project outside git: the files its code layer packs, each with sha256, size and mode,
recorded in the lock's ``code`` section so the code can be rebuilt and checked later.

Left out: ``.git``, ``__pycache__``, virtual environments (a directory holding
``pyvenv.cfg`` or ``conda-meta``), the paths in ``exclude`` (envlock's and MLflow's
local state, the lockfile being written) and what ``.dockerignore`` / ``.envlockignore``
exclude. Secret files (by name, plus the config's ``deny``, or by content: see
``secrets``) are listed as *withheld*, by path only (and the kind of secret found). The
walk stats every file and checks the size cap before reading any; each file is then read
once, to hash it and scan it. Everything is sorted: the same tree gives the
same section wherever it lies and whatever the umask.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.errors import UsageError
from envlock.model import sizes
from envlock.model.redact import is_secret_file

if TYPE_CHECKING:
    from envlock.snapshot.secrets import Scan

DEFAULT_MAX_SIZE = 256 * 1024 ** 2
#: Directories that are never the experiment's code.
SKIPPED_DIRS = frozenset({".git", "__pycache__"})


@dataclass(frozen=True)
class Rules:
    """What the walk keeps: ``deny`` patterns (withheld like secrets), the size cap, and
    ``allow``: files kept although their content looks like a secret (``--allow-file``)."""

    deny: tuple[str, ...] = ()
    max_size: int = DEFAULT_MAX_SIZE
    allow: tuple[str, ...] = ()


@dataclass
class _Found:
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, size from stat)
    symlinks: list[dict[str, str]] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


def parse_size(text: str | int) -> int:
    """``1g``, ``256MiB``, ``1.5G``, ``500k`` or a number of bytes -> bytes."""
    return sizes.parse(text, "code size limit")


human_size = sizes.human


def probe_directory(path: str | Path, rules: Rules = Rules(),
                    exclude: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """The ``code`` section of the lock for the project directory ``path``."""
    root = Path(path).resolve()
    skip = {rel for rel in (_relative(root, p) for p in exclude) if rel}
    found = _walk(root, rules, skip)
    total = sum(size for _, size in found.files)
    if total > rules.max_size:
        raise too_large(root, found.files, total, rules.max_size)
    from envlock.snapshot.secrets import Scan, allow_patterns

    scan = Scan(allow_patterns(rules.allow, root))
    files = []
    for rel, _ in found.files:
        entry = _entry(root, rel, scan)
        if entry is None:
            found.withheld.append(rel)
        else:
            files.append(entry)
    section = {"kind": "directory", "root": str(root), "files": files,
               "symlinks": found.symlinks, "withheld": sorted(found.withheld),
               "total_bytes": sum(f["size"] for f in files)}
    if scan.record():
        section["secret_scan"] = scan.record()
    return section


def too_large(root: Path, files: list[tuple[str, int]], total: int, cap: int) -> UsageError:
    largest = sorted(files, key=lambda f: (-f[1], f[0]))[:5]
    named = ", ".join(f"{rel} ({human_size(size)})" for rel, size in largest)
    return UsageError(
        f"{root} is not a git repository and its files add up to {human_size(total)}, over "
        f"the {human_size(cap)} limit for packing it as code; largest: {named}",
        "add them to .envlockignore (same syntax as .dockerignore), or raise the limit "
        "with --code-max-size / code_max_size in the project config")


def _walk(root: Path, rules: Rules, skip: set[str]) -> _Found:
    from envlock.model.ignore import ignore_patterns

    patterns = ignore_patterns(root)
    prune_ignored = not any(p.startswith("!") for p in patterns)  # no re-include below
    found = _Found()
    for current, dirs, names in os.walk(root):
        base = os.path.relpath(current, root)
        prefix = "" if base == "." else base.replace(os.sep, "/") + "/"
        kept = []
        for name in sorted(dirs):
            rel, full = prefix + name, os.path.join(current, name)
            if os.path.islink(full):
                _consider(found, root, rel, patterns, rules, skip)
            elif _descend(found, full, rel, patterns, rules, skip, prune_ignored):
                kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            _consider(found, root, prefix + name, patterns, rules, skip)
    found.files.sort()
    found.symlinks.sort(key=lambda s: s["path"])
    found.withheld.sort()
    return found


def _denied(rel: str, rules: Rules) -> bool:
    from envlock.model.ignore import ignored

    return is_secret_file(rel, rules.deny) or bool(rules.deny) and ignored(rel, list(rules.deny))


def _descend(found: _Found, full: str, rel: str, patterns: list[str], rules: Rules,
             skip: set[str], prune_ignored: bool) -> bool:
    from envlock.model.ignore import ignored

    if os.path.basename(full) in SKIPPED_DIRS or rel in skip:
        return False
    if os.path.exists(os.path.join(full, "pyvenv.cfg")) or \
            os.path.isdir(os.path.join(full, "conda-meta")):
        return False  # a virtual environment: environment, not code
    if ignored(rel, patterns):
        return not prune_ignored
    if _denied(rel, rules):
        found.withheld.append(rel)
        return False
    return True


def _consider(found: _Found, root: Path, rel: str, patterns: list[str], rules: Rules,
              skip: set[str]) -> None:
    from envlock.model.ignore import ignored

    if rel in skip or ignored(rel, patterns):
        return
    if _denied(rel, rules):
        found.withheld.append(rel)
        return
    info = os.lstat(root / rel)
    if stat.S_ISLNK(info.st_mode):
        found.symlinks.append({"path": rel, "target": os.readlink(root / rel)})
    elif stat.S_ISREG(info.st_mode):
        found.files.append((rel, info.st_size))


def _entry(root: Path, rel: str, scan: Scan) -> dict[str, Any] | None:
    """One file, read once: its sha256 and size, and its mode as 755 or 644; its content
    scanned for secrets (None: it holds one, and is withheld)."""
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with (root / rel).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                head = block if not size else b""  # the whole file, when it is one block
                size += len(block)
            executable = os.fstat(handle.fileno()).st_mode & 0o111
    except OSError as exc:
        raise UsageError(f"{root / rel} cannot be read ({exc.strerror}), so the project "
                         "cannot be recorded", "add it to .envlockignore") from exc
    finding = scan.file(root / rel, rel, head if len(head) == size else None)
    if finding:
        scan.withhold(finding)
        return None
    return {"path": rel, "sha256": "sha256:" + digest.hexdigest(), "size": size,
            "mode": "755" if executable else "644"}


def _relative(root: Path, path: str | Path) -> str | None:
    try:
        return Path(path).absolute().resolve().relative_to(root).as_posix()
    except ValueError:
        return None
