"""``envlock lock``: snapshot an environment into a lockfile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.options import (
    AllowFileOpt,
    CodeMaxSizeOpt,
    EnvAllowOpt,
    JsonOpt,
    PythonOpt,
)

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
    from envlock.cli.lockrun import LockArgs, run_lock

    raise typer.Exit(run_lock(LockArgs(
        output=output, python=python, command=command, project=project, no_git=no_git,
        no_gpu=no_gpu, env_allow=env_allow, code_max_size=code_max_size,
        allow_file=allow_file, as_json=as_json)))


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
