"""Pure: the inputs a run read (data, pretrained weights), as the lock records them.

An :class:`Input` is one path as the run saw it — project-relative (``data/train.csv``)
or absolute (``/mnt/shared/train.csv``) — with its kind, size and sha256, and how it is
carried to a replay: ``copy`` (its bytes go to the image's registry, content-addressed)
or ``reference`` (only its hashes are recorded; the replay host must have the same
bytes). A directory is a sorted manifest of (relative path, size, sha256); its sha256 is
that manifest's, so two locks diff file by file.

Nothing here reads a file: hashing and walking are :mod:`envlock.snapshot.inputs`; this
module merges, decides the carry, diffs, verifies, and keeps the stat cache's keys.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from envlock.model import sizes

KINDS = ("file", "directory", "mlflow-dataset", "hub-model", "remote")
#: Kinds made of several files, recorded as a manifest.
TREES = ("directory", "hub-model")
CARRIES = ("copy", "reference")
#: Copy inputs up to this many bytes in total (``inputs_copy_max`` in [tool.envlock]).
DEFAULT_COPY_MAX = 1 << 30
CONFIG_HINT = ("raise the cap with inputs_copy_max = \"5g\" in [tool.envlock] (or "
               "ENVLOCK_INPUTS_COPY_MAX=5g), or set it to 0 to reference every input")


@dataclass(frozen=True)
class Entry:
    """One file of a directory input: its path inside the directory, size and sha256."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Input:
    """One input of a run (see the module docs). ``sources``: where it was found
    (declared, config, command, mlflow); ``dataset``: the MLflow dataset's name and the
    digest MLflow computed, when the run logged it as one."""

    path: str
    kind: str
    size: int
    sha256: str
    carry: str = "reference"
    files: tuple[Entry, ...] = ()
    sources: tuple[str, ...] = ()
    dataset: Mapping[str, str] | None = None
    #: A hub model's repository, type, revision (commit) and refs (:mod:`envlock.model.hub`).
    hub: Mapping[str, str] | None = None
    #: A remote object's identity (kind remote, ``s3://``): its ETag and VersionId.
    remote: Mapping[str, str] | None = None

    @property
    def absolute(self) -> bool:
        return self.path.startswith("/")

    @property
    def is_tree(self) -> bool:
        return self.kind in TREES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "size": self.size,
                               "sha256": self.sha256, "carry": self.carry,
                               "sources": list(self.sources)}
        if self.dataset:
            out["dataset"] = dict(sorted(self.dataset.items()))
        if self.hub:
            out["hub"] = dict(sorted(self.hub.items()))
        if self.remote is not None:
            out["remote"] = dict(sorted(self.remote.items()))
        if self.is_tree:
            out["files"] = [f.to_dict() for f in self.files]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Input:
        return cls(path=str(raw["path"]), kind=str(raw["kind"]), size=int(raw["size"]),
                   sha256=str(raw["sha256"]), carry=str(raw.get("carry", "reference")),
                   files=tuple(Entry(str(f["path"]), int(f["size"]), str(f["sha256"]))
                               for f in raw.get("files") or ()),
                   sources=tuple(raw.get("sources") or ()), dataset=raw.get("dataset"),
                   hub=raw.get("hub"), remote=raw.get("remote"))

    def blobs(self) -> list[tuple[str, int, str]]:
        """(path as the run saw it, size, sha256) of each file it is made of."""
        if self.is_tree:
            return [(posixpath.join(self.path, f.path), f.size, f.sha256) for f in self.files]
        return [(self.path, self.size, self.sha256)]


def manifest(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """A directory's files, sorted by path (the order the lock writes and hashes)."""
    return tuple(sorted(entries, key=lambda e: e.path))


def manifest_digest(entries: Iterable[Entry]) -> str:
    """sha256 over ``"<sha256>  <size>  <path>\\n"`` per file, in path order."""
    digest = hashlib.sha256()
    for entry in manifest(entries):
        digest.update(f"{entry.sha256}  {entry.size}  {entry.path}\n".encode())
    return digest.hexdigest()


def directory(path: str, entries: Iterable[Entry], sources: tuple[str, ...] = (),
              hub: Mapping[str, str] | None = None) -> Input:
    """A directory input; with ``hub``, a hub cache's repository folder (kind hub-model)."""
    files = manifest(entries)
    return Input(path=path, kind="hub-model" if hub else "directory",
                 size=sum(f.size for f in files), sha256=manifest_digest(files), files=files,
                 sources=sources, hub=hub)


# ------------------------------------------------------------------ merging and the carry

def merge(inputs: Iterable[Input]) -> tuple[Input, ...]:
    """One input per path (their sources and dataset facts together), sorted by path; a
    file inside a directory input is part of it, not another input."""
    by_path: dict[str, Input] = {}
    for item in inputs:
        seen = by_path.get(item.path)
        if seen is None:
            by_path[item.path] = item
            continue
        sources = tuple(sorted({*seen.sources, *item.sources}))
        by_path[item.path] = replace(seen, sources=sources,
                                     dataset=seen.dataset or item.dataset)
    dirs = [p for p, i in by_path.items() if i.is_tree]
    kept = {p: i for p, i in by_path.items()
            if not any(p != d and p.startswith(d.rstrip("/") + "/") for d in dirs)}
    return tuple(kept[p] for p in sorted(kept))


def decide_carry(inputs: Iterable[Input], copy_max: int = DEFAULT_COPY_MAX,
                 can_copy: bool = True) -> tuple[tuple[Input, ...], list[str]]:
    """Copy inputs in path order while their total stays within ``copy_max`` bytes; the
    rest are referenced, each named in a warning that says how to change it. Without a
    registry (``can_copy`` false) every input is referenced."""
    out, warnings, total = [], [], 0
    for item in inputs:
        if item.kind == "remote":  # verified where it lives, never copied
            out.append(replace(item, carry="reference"))
            continue
        if can_copy and total + item.size <= copy_max:
            total += item.size
            out.append(replace(item, carry="copy"))
            continue
        out.append(replace(item, carry="reference"))
        if not can_copy:
            continue
        warnings.append(f"input {item.path} ({human_size(item.size)}) is referenced, not "
                        f"copied: copies are capped at {human_size(copy_max)} in total; "
                        f"a replay needs the same bytes at that path ({CONFIG_HINT})")
    local = [i for i in out if i.kind != "remote"]
    if not can_copy and local:
        warnings.append(f"{len(local)} input(s) are referenced only (hashes recorded): no "
                        "registry to copy them to; capture with --registry to carry them")
    return tuple(out), warnings


human_size = sizes.human  # the project's one way to print bytes


def is_output(mtime_ns: int, started_ns: int | None) -> bool:
    """A file modified after the run started is something it wrote, not an input."""
    return started_ns is not None and mtime_ns > started_ns


# ------------------------------------------------------------------ differences

@dataclass(frozen=True)
class Change:
    """How one input differs: ``what`` is missing | added | changed; ``detail`` says how
    (sizes and hashes); ``files``: the directory's own file-by-file changes."""

    path: str
    what: str
    detail: str = ""
    files: tuple[Change, ...] = ()

    def describe(self) -> str:
        text = f"{self.path}: {self.what}" + (f" ({self.detail})" if self.detail else "")
        if self.files:
            text += "; " + ", ".join(f.describe() for f in self.files[:5])
            if len(self.files) > 5:
                text += f", and {len(self.files) - 5} more file(s)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "what": self.what, "detail": self.detail,
                "files": [f.to_dict() for f in self.files]}


@dataclass(frozen=True)
class InputsDiff:
    added: tuple[Input, ...] = ()
    removed: tuple[Input, ...] = ()
    changed: tuple[Change, ...] = ()

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        return ([f"+ {i.path} ({i.kind}, {human_size(i.size)})" for i in self.added]
                + [f"- {i.path} ({i.kind}, {human_size(i.size)})" for i in self.removed]
                + [f"~ {c.describe()}" for c in self.changed])

    def to_dict(self) -> dict[str, Any]:
        return {"added": [i.path for i in self.added], "removed": [i.path for i in self.removed],
                "changed": [c.to_dict() for c in self.changed]}


def _detail(old_size: int, old_sha: str, new_size: int, new_sha: str) -> str:
    parts = []
    if old_size != new_size:
        parts.append(f"size {old_size} → {new_size}")
    if old_sha != new_sha:
        parts.append(f"sha256 {old_sha[:12]} → {new_sha[:12]}")
    return ", ".join(parts)


def _file_changes(old: tuple[Entry, ...], new: tuple[Entry, ...]) -> tuple[Change, ...]:
    before, after = {e.path: e for e in old}, {e.path: e for e in new}
    out = []
    for path in sorted({*before, *after}):
        a, b = before.get(path), after.get(path)
        if a is None:
            out.append(Change(path, "added"))
        elif b is None:
            out.append(Change(path, "missing"))
        elif (a.size, a.sha256) != (b.size, b.sha256):
            out.append(Change(path, "changed", _detail(a.size, a.sha256, b.size, b.sha256)))
    return tuple(out)


def change(old: Input, new: Input) -> Change | None:
    """How ``new`` differs from ``old`` (the same path), None when it has the same bytes.
    MLflow datasets also differ by the digest MLflow computed, remote objects by their
    ETag and VersionId."""
    if old.remote is not None or new.remote is not None:
        return _remote_change(old, new)
    digests = ((old.dataset or {}).get("digest"), (new.dataset or {}).get("digest"))
    if old.sha256 == new.sha256 and old.size == new.size and (
            None in digests or digests[0] == digests[1]):
        return None
    detail = _detail(old.size, old.sha256, new.size, new.sha256)
    if None not in digests and digests[0] != digests[1]:
        detail += (", " if detail else "") + f"MLflow dataset digest {digests[0]} → {digests[1]}"
    files = _file_changes(old.files, new.files) if old.is_tree or new.is_tree else ()
    return Change(old.path, "changed", detail, files)


def _remote_change(old: Input, new: Input) -> Change | None:
    before, after = dict(old.remote or {}), dict(new.remote or {})
    parts = [f"{key} {before.get(key) or '-'} → {after.get(key) or '-'}"
             for key in ("etag", "version_id") if before.get(key) != after.get(key)]
    if old.size != new.size:
        parts.insert(0, f"size {old.size} → {new.size}")
    return Change(old.path, "changed", ", ".join(parts)) if parts else None


# ------------------------------------------------------------------ remote objects

REMOTE_SCHEMES = ("s3://",)


def is_remote(path: str) -> bool:
    return path.startswith(REMOTE_SCHEMES)


def s3_location(url: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://BUCKET/KEY``; ValueError when it names no object."""
    bucket, _, key = url[len("s3://"):].partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise ValueError(f"{url} names no S3 object (s3://BUCKET/KEY)")
    return bucket, key


def remote(url: str, size: int, etag: str, version_id: str | None,
           sources: tuple[str, ...] = ()) -> Input:
    """A remote object, referenced by its identity: ETag (quotes dropped) and VersionId
    (empty in an unversioned bucket). Its bytes are not read: sha256 stays empty."""
    return Input(path=url, kind="remote", size=size, sha256="", carry="reference",
                 sources=sources, remote={"etag": etag.strip('"'),
                                          "version_id": version_id or ""})


def diff(old: Iterable[Input], new: Iterable[Input]) -> InputsDiff:
    """Added, removed and changed inputs from ``old`` to ``new``, by path."""
    before, after = {i.path: i for i in old}, {i.path: i for i in new}
    changed = [c for p in sorted(before.keys() & after.keys())
               if (c := change(before[p], after[p])) is not None]
    return InputsDiff(added=tuple(after[p] for p in sorted(after.keys() - before.keys())),
                      removed=tuple(before[p] for p in sorted(before.keys() - after.keys())),
                      changed=tuple(changed))


def verify(recorded: Iterable[Input], found: Mapping[str, Input | None]) -> list[Change]:
    """The recorded inputs that the host does not have as recorded: ``found`` maps each
    path to what is there now (None: missing)."""
    out = []
    for item in recorded:
        now = found.get(item.path)
        if now is None:
            out.append(Change(item.path, "missing", "not on this host"))
        elif (c := change(replace(item, dataset=None), now)) is not None:
            out.append(c)
    return out


# ------------------------------------------------------------------ the stat cache

StatKey = tuple[str, int, int, int]  # (absolute path, size, mtime_ns, inode)


@dataclass
class StatCache:
    """sha256 of files by (path, size, mtime_ns, inode): a file whose stat is unchanged is
    not hashed again. ``dirty``: something was added since it was loaded."""

    entries: dict[StatKey, str] = field(default_factory=dict)
    dirty: bool = False

    def get(self, key: StatKey) -> str | None:
        return self.entries.get(key)

    def put(self, key: StatKey, sha256: str) -> None:
        if self.entries.get(key) != sha256:
            self.entries[key] = sha256
            self.dirty = True

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "entries": [[*k, v] for k, v in sorted(self.entries.items())]}

    @classmethod
    def from_json(cls, raw: Any) -> StatCache:
        if not isinstance(raw, dict) or raw.get("version") != 1:
            return cls()
        try:
            return cls({(str(p), int(s), int(m), int(i)): str(h)
                        for p, s, m, i, h in raw.get("entries") or ()})
        except (TypeError, ValueError):
            return cls()


# ------------------------------------------------------------------ where a replay puts them

def container_path(path: str, workdir: str) -> str:
    """Where the replay container sees an input: project-relative ones inside its
    workspace, absolute ones at the same path."""
    return path if path.startswith("/") else posixpath.join(workdir, path)


def to_section(inputs: Iterable[Input]) -> list[dict[str, Any]]:
    return [i.to_dict() for i in sorted(inputs, key=lambda i: i.path)]


def from_section(raw: Iterable[Mapping[str, Any]] | None) -> tuple[Input, ...]:
    return tuple(Input.from_dict(r) for r in raw or ())
