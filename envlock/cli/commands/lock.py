"""``envlock lock``: snapshot an environment into a lockfile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from envlock.cli.options import (
    AllowFileOpt,
    CodeMaxSizeOpt,
    EnvAllowOpt,
    JsonOpt,
    PythonOpt,
)

if TYPE_CHECKING:
    from envlock.model.lockfile import Lock

OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Lockfile to write.")]
CommandOpt = Annotated[str | None, typer.Option(
    "--command", "-c", help="The command that ran the experiment (recorded, secrets masked).")]
ProjectOpt = Annotated[Path, typer.Option(
    "--project", help="The experiment's directory: its git state is recorded, or outside git "
    "every file it packs, with its sha256.", show_default=True)]
NoGitOpt = Annotated[bool, typer.Option("--no-git", "--no-code",
                                        help="Record no code (no git state, no files).")]
NoGpuOpt = Annotated[bool, typer.Option("--no-gpu", help="Skip the GPU/NVML probe.")]


def lock_command(
    output: OutputOpt = Path("envlock.lock.yaml"),
    python: PythonOpt = None,
    command: CommandOpt = None,
    project: ProjectOpt = Path("."),
    no_git: NoGitOpt = False,
    no_gpu: NoGpuOpt = False,
    env_allow: EnvAllowOpt = None,
    code_max_size: CodeMaxSizeOpt = None,
    allow_file: AllowFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot an environment into a lockfile.

    Records Python, every package with its source, torch/CUDA/cuDNN/NCCL, GPU and driver,
    OS, git state (commit, diff, untracked files) — outside git every file of the project
    with its sha256 — and the runtime knobs."""
    from envlock import config
    from envlock.cli import output as out
    from envlock.model import lockfile
    from envlock.snapshot import snapshot

    out.begin("lock", as_json)
    cfg = config.load(project)
    lock = snapshot(python=python, project=None if no_git else project, command=command,
                    env_allow=cfg.get("env_allow", env_allow), probe_gpu=not no_gpu,
                    exclude=(output,),
                    code_rules=cfg.code_rules(code_max_size, tuple(allow_file or ())))
    path = lockfile.write(lock, output)
    for warning in lock_warnings(lock):
        out.warn(warning)
    env_digest = lock.env_digest
    result = {"lockfile": str(path), "env_digest": env_digest,
              "lock_digest": lock.lock_digest, "packages": len(lock.packages),
              "python": lock.python["version"], "dirty": bool(lock.git and lock.git["dirty"])}
    torch = lock.frameworks.get("torch")
    human = (f"Locked {len(lock.packages)} packages (Python {lock.python['version']}"
             f"{', torch ' + torch['version'] if torch else ''}) → {path}\n"
             f"env_digest {env_digest}")
    raise typer.Exit(out.emit(result, human))


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


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
