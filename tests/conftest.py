"""Shared fixtures: run the real CLI, make real git repos and real virtualenvs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_envlock(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                check: bool = False, stdin: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ENVLOCK_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "envlock", *args], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=300, input=stdin,
                            stdin=None if stdin is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"envlock {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def init_repo(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def envlock_cli():
    return run_envlock
