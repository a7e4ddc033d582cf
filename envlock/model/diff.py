"""Pure: categorized differences between two locks ("why did my results change?")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envlock.model.inputs import InputsDiff
from envlock.model.inputs import diff as diff_inputs
from envlock.model.lockfile import Lock, Package
from envlock.model.locksections import CodeSection

#: Categories in display order, and the fields compared in each (dotted paths).
FIELDS: dict[str, tuple[str, ...]] = {
    "python": ("implementation", "version", "abi", "platform_tag", "arch", "venv"),
    "frameworks": (),  # every leaf
    "gpu": ("driver_version", "cuda_driver_version", "devices", "cuda_toolkit.version"),
    "host": ("cpu.model", "cpu.arch", "cpu.isa_level", "cpu.flags", "cpu.usable_cores",
             "memory.total_bytes", "memory.limit_bytes", "shm.size_bytes"),
    "os": ("system", "distro", "distro_version", "kernel", "libc.family", "libc.version", "arch",
           "container"),
    "git": ("commit", "branch", "remote_url", "dirty", "diff_sha256", "untracked", "submodules"),
    "runtime": ("env", "command"),
}
#: A project outside git: files added, removed or changed (by sha256 and mode).
CODE = "code"
#: Categories whose differences mean the environment itself drifted.
ENV_CATEGORIES = ("packages", "python")


@dataclass(frozen=True)
class Change:
    category: str
    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class PackageChange:
    name: str
    old_version: str | None
    new_version: str | None
    old_source: str | None
    new_source: str | None

    @property
    def kind(self) -> str:
        if self.old_version is None:
            return "added"
        if self.new_version is None:
            return "removed"
        return "changed"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "old_version": self.old_version,
                "new_version": self.new_version, "old_source": self.old_source,
                "new_source": self.new_source}


@dataclass(frozen=True)
class LockDiff:
    old_env_digest: str
    new_env_digest: str
    packages: tuple[PackageChange, ...] = ()
    changes: tuple[Change, ...] = field(default_factory=tuple)
    #: What the runs read: added, removed, changed inputs (file by file for directories).
    inputs: InputsDiff = field(default_factory=InputsDiff)

    @property
    def identical(self) -> bool:
        return not self.packages and not self.changes and self.inputs.same

    @property
    def env_changed(self) -> bool:
        return bool(self.packages) or any(c.category in ENV_CATEGORIES for c in self.changes)

    def by_category(self) -> dict[str, list[Change]]:
        grouped: dict[str, list[Change]] = {}
        for change in self.changes:
            grouped.setdefault(change.category, []).append(change)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "env_changed": self.env_changed,
            "env_digest": {"old": self.old_env_digest, "new": self.new_env_digest},
            "packages": {kind: [p.to_dict() for p in self.packages if p.kind == kind]
                         for kind in ("added", "removed", "changed")},
            "changes": [c.to_dict() for c in self.changes],
            "inputs": self.inputs.to_dict(),
        }


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def _section_changes(category: str, old: Any, new: Any) -> list[Change]:
    paths = FIELDS[category]
    if not paths:  # every leaf, in sorted order
        a, b = _leaves(old or {}), _leaves(new or {})
        return [Change(category, k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)]
    return [Change(category, p, _get(old, p), _get(new, p)) for p in paths
            if _get(old, p) != _get(new, p)]


def _package_changes(old: tuple[Package, ...], new: tuple[Package, ...]) -> list[PackageChange]:
    a = {p.name: p for p in old}
    b = {p.name: p for p in new}
    out = []
    for name in sorted(set(a) | set(b)):
        pa, pb = a.get(name), b.get(name)
        if pa and pb and pa.version == pb.version and pa.source == pb.source:
            continue
        out.append(PackageChange(
            name=name, old_version=pa.version if pa else None,
            new_version=pb.version if pb else None,
            old_source=pa.source.describe() if pa else None,
            new_source=pb.source.describe() if pb else None))
    return out


def _code_entries(code: CodeSection) -> dict[str, str]:
    """path -> what identifies its content: ``sha256 mode`` for files, ``-> target`` for links."""
    entries = {f["path"]: f"{f['sha256']} {f.get('mode', '644')}" for f in code.get("files") or []}
    entries.update({s["path"]: f"-> {s['target']}" for s in code.get("symlinks") or []})
    return entries


def _code_changes(old: CodeSection | None, new: CodeSection | None) -> list[Change]:
    """One change per file added, removed or changed; the directory's location is not code."""
    if old is None or new is None:
        return [Change(CODE, "directory", bool(old), bool(new))] if old != new else []
    a, b = _code_entries(old), _code_entries(new)
    changes = [Change(CODE, path, a.get(path), b.get(path)) for path in sorted(set(a) | set(b))
               if a.get(path) != b.get(path)]
    if sorted(old.get("withheld") or []) != sorted(new.get("withheld") or []):
        changes.append(Change(CODE, "withheld", old.get("withheld"), new.get("withheld")))
    return changes


def diff_locks(old: Lock, new: Lock) -> LockDiff:
    changes: list[Change] = []
    for category in FIELDS:
        a, b = getattr(old, category), getattr(new, category)
        if category == "host" and (a is None or b is None):
            continue  # unknown (a migrated schema-1 lock) is not a difference
        if category == "git" and (a is None or b is None):
            if a != b:
                changes.append(Change("git", "repository", bool(a), bool(b)))
            continue
        changes.extend(_section_changes(category, a, b))
    changes.extend(_code_changes(old.code, new.code))
    return LockDiff(old_env_digest=old.env_digest, new_env_digest=new.env_digest,
                    packages=tuple(_package_changes(old.packages, new.packages)),
                    changes=tuple(changes), inputs=diff_inputs(old.inputs, new.inputs))
