"""The live environment against a lock: drift is a failed check."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.model.diff import LockDiff, diff_locks
from envlock.model.integrity import IntegrityReport, from_probe
from envlock.model.lockfile import Lock


@dataclass(frozen=True)
class CheckResult:
    lock_path: str
    env_digest_locked: str
    env_digest_live: str
    diff: LockDiff
    integrity: IntegrityReport | None = None
    strict: bool = False

    @property
    def drifted(self) -> bool:
        if self.diff.env_changed:
            return True
        if self.strict and not self.diff.identical:
            return True
        return self.integrity is not None and not self.integrity.ok

    def to_dict(self) -> dict[str, Any]:
        return {"lock": self.lock_path, "drifted": self.drifted, "strict": self.strict,
                "env_digest": {"locked": self.env_digest_locked, "live": self.env_digest_live},
                "diff": self.diff.to_dict(),
                "integrity": self.integrity.to_dict() if self.integrity else None}


def check(lock: Lock, lock_path: str | Path = "<lock>", python: str | None = None,
          deep: bool = False, strict: bool = False, project: str | Path | None = ".",
          env_allow: Iterable[str] = (), code_rules: Any = None) -> CheckResult:
    """Snapshot the live environment and compare it to ``lock``.

    Drift is any change to packages or Python; with ``strict`` any difference at all
    (GPU, OS, git, knobs). ``deep`` also verifies every installed file against RECORD.
    """
    from dataclasses import replace

    from envlock.snapshot import Request, take
    from envlock.snapshot.directory import Rules
    from envlock.snapshot.secrets import recorded_allow

    # What the lock kept with --allow-file is kept again, so that the same code compares equal.
    rules = code_rules or Rules()
    rules = replace(rules, allow=rules.allow + recorded_allow(lock.git or lock.code))
    live, raw = take(Request(python=python, project=project, env_allow=tuple(env_allow),
                             deep=deep, exclude=(lock_path,), code_rules=rules))
    live = live.with_command(lock.runtime.get("command"))  # the command is not environment
    integrity = from_probe(raw["distributions"]) if deep else None
    return CheckResult(lock_path=str(lock_path), env_digest_locked=lock.env_digest,
                       env_digest_live=live.env_digest, diff=diff_locks(lock, live),
                       integrity=integrity, strict=strict)
