"""``envlock lock``: snapshot an environment into a lockfile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

PythonOpt = Annotated[str | None, typer.Option(
    "--python", "-p", help="Interpreter (or venv directory) to snapshot; default: envlock's own. "
    "Nothing is installed into it.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result.")]
ProjectOpt = Annotated[Path, typer.Option(
    "--project", help="The experiment's directory: its git state is recorded, or outside git "
    "every file it packs, with its sha256.", show_default=True)]
CodeMaxSizeOpt = Annotated[str | None, typer.Option(
    "--code-max-size", help="Size cap for packing a project outside git (e.g. 512m, 1g; "
    "default: the config's code_max_size, else 256m).")]
AllowFileOpt = Annotated[list[str] | None, typer.Option(
    "--allow-file", help="Keep this file in the code although its content looks like a "
    "secret (a false positive); a path or pattern relative to the project (repeatable).")]
EnvAllowOpt = Annotated[list[str] | None, typer.Option(
    "--env-allow", help="Extra env var name pattern to record (repeatable, e.g. 'MY_SEED*'; "
    "default: the config's env_allow). Secret-looking names are never recorded.")]


def lock_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Lockfile to write.")] = Path(
        "envlock.lock.yaml"),
    python: PythonOpt = None,
    command: Annotated[str | None, typer.Option(
        "--command", "-c", help="The command that ran the experiment (recorded, secrets "
        "masked).")] = None,
    project: ProjectOpt = Path("."),
    no_git: Annotated[bool, typer.Option("--no-git", "--no-code",
                                         help="Record no code (no git state, no files).")
                      ] = False,
    no_gpu: Annotated[bool, typer.Option("--no-gpu", help="Skip the GPU/NVML probe.")] = False,
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
    for warning in lock_warnings(lock, no_git):
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


def lock_warnings(lock, no_git: bool) -> list[str]:  # type: ignore[no-untyped-def]
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


def secret_warnings(scan: dict[str, Any] | None, where: str) -> list[str]:
    """What a content scan withheld (by file and kind of secret, never the value) and kept
    on ``--allow-file``, as warning lines."""
    if not scan:
        return []
    out = []
    if scan.get("withheld"):
        named = ", ".join(f"{e['path']} ({e['kind']}"
                          + (f"; {len(e['hunks'])} hunk{'s' * (len(e['hunks']) != 1)} of the "
                             "diff" if e.get("hunks") else "") + ")" for e in scan["withheld"])
        out.append(f"left out of {where} because their content looks like a secret: {named}; "
                   "keep a false positive with --allow-file PATH")
    if scan.get("allowed"):
        out.append("kept although their content looks like a secret (--allow-file): "
                   + ", ".join(f"{e['path']} ({e['kind']})" for e in scan["allowed"]))
    return out


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
