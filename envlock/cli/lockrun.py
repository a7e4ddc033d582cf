"""``envlock lock`` without typer: the command's body, and a parser for the plain
command lines that need nothing of click (``envlock.cli.main`` runs those directly).

Importing typer and click, and building the command from its signature, is about a
third of a lock's start-up. A command line this parser does not fully understand (help,
an unknown or repeated option, a value that looks like an option, ``--``, ``--debug``)
goes to typer as before, so every help text and every usage error stays typer's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envlock.model.lockfile import Lock


@dataclass(frozen=True)
class LockArgs:
    """The options of ``envlock lock``, as typer passes them (defaults included)."""

    output: Path = Path("envlock.lock.yaml")
    python: str | None = None
    command: str | None = None
    project: Path = Path(".")
    no_git: bool = False
    no_gpu: bool = False
    env_allow: list[str] | None = None
    code_max_size: str | None = None
    allow_file: list[str] | None = None
    as_json: bool = False


#: Option -> (field, how its value is read): "path", "str", "list" (repeatable) or "flag".
OPTIONS = {
    "--output": ("output", "path"), "-o": ("output", "path"),
    "--python": ("python", "str"), "-p": ("python", "str"),
    "--command": ("command", "str"), "-c": ("command", "str"),
    "--project": ("project", "path"),
    "--no-git": ("no_git", "flag"), "--no-code": ("no_git", "flag"),
    "--no-gpu": ("no_gpu", "flag"),
    "--env-allow": ("env_allow", "list"),
    "--code-max-size": ("code_max_size", "str"),
    "--allow-file": ("allow_file", "list"),
    "--json": ("as_json", "flag"),
}


def parse(argv: Sequence[str]) -> LockArgs | None:
    """The options of ``argv`` (``["lock", ...]``), or None when typer must read it."""
    if list(argv[:1]) != ["lock"] or "ENVLOCK_DEBUG" in os.environ:
        return None
    values: dict[str, Any] = {}
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        field, kind = OPTIONS.get(name, (None, None))
        if field is None or (kind == "flag" and eq) or (field in values and kind != "list"):
            return None
        if kind == "flag":
            values[field] = True
            continue
        if not eq:
            if not rest or rest[0].startswith("-"):
                return None
            inline = rest.pop(0)
        if not inline:
            return None
        value = Path(inline) if kind == "path" else inline
        values[field] = [*values.get(field, []), value] if kind == "list" else value
    return LockArgs(**values)


def run_lock(args: LockArgs) -> int:
    """Snapshot, write the lockfile, print the result; the exit code."""
    from envlock import config
    from envlock.cli import output as out
    from envlock.model import lockfile
    from envlock.snapshot import snapshot

    out.begin("lock", args.as_json)
    cfg = config.load(args.project)
    lock = snapshot(python=args.python, project=None if args.no_git else args.project,
                    command=args.command, env_allow=cfg.get("env_allow", args.env_allow),
                    probe_gpu=not args.no_gpu, exclude=(args.output,),
                    code_rules=cfg.code_rules(args.code_max_size,
                                              tuple(args.allow_file or ())))
    path, document = lockfile.save(lock, args.output)
    for warning in lock_warnings(lock):
        out.warn(warning)
    env_digest = document["env_digest"]
    result = {"lockfile": str(path), "env_digest": env_digest,
              "lock_digest": document["lock_digest"], "packages": len(lock.packages),
              "python": lock.python["version"], "dirty": bool(lock.git and lock.git["dirty"])}
    torch = lock.frameworks.get("torch")
    human = (f"Locked {len(lock.packages)} packages (Python {lock.python['version']}"
             f"{', torch ' + torch['version'] if torch else ''}) → {path}\n"
             f"env_digest {env_digest}")
    return out.emit(result, human)


def lock_warnings(lock: Lock) -> list[str]:
    from envlock.cli.output import secret_warnings

    warnings = []
    if lock.code:
        from envlock.snapshot.directory import human_size

        count = len(lock.code["files"])
        warnings.append(f"not a git repository: recorded its {count} file{'s' * (count != 1)} "
                        f"({human_size(lock.code['total_bytes'])}) by content; exclude more "
                        "with .envlockignore")
    section = lock.git or lock.code or {}
    warnings += secret_warnings(section.get("secret_scan"), "the lock")
    by_content = {e["path"] for e in (section.get("secret_scan") or {}).get("withheld") or ()}
    withheld = [p for p in section.get("withheld") or () if p not in by_content]
    if withheld:
        warnings.append(f"left out of the lock because they may hold secrets: "
                        f"{', '.join(withheld)}")
    if lock.runtime.get("withheld_env"):
        warnings.append(f"env vars not recorded (secret-looking names): "
                        f"{', '.join(lock.runtime['withheld_env'])}")
    if lock.shadowed:
        warnings.append(f"{len(lock.shadowed)} shadowed distribution(s) recorded under "
                        f"`shadowed:` (stale duplicates on sys.path)")
    from envlock.model.uvlock import warnings as uv_warnings

    return warnings + uv_warnings(lock)
