"""Take a snapshot of an environment: the ordered probes that fill a :class:`Lock`.

The interpreter probe runs in a child process (the interpreter being locked);
git, GPU and toolkit probes overlap it in this process. Everything that decides
what raw facts mean lives in pure modules (packages, frameworks, system, runtime).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from envlock.errors import UsageError
from envlock.lockfile import Lock, Package
from envlock.redact import redact_argv
from envlock.snapshot import frameworks, gpu, index, packages, runtime, system
from envlock.snapshot.interpreter import start_probe


def _with_git_state(pkgs: list[Package]) -> list[Package]:
    """Editable and local-directory packages: record their repository's commit and dirtiness."""
    from envlock.snapshot.git import repo_state

    out = []
    for pkg in pkgs:
        path = pkg.source.path
        if pkg.source.kind in ("editable", "directory") and path and Path(path).exists():
            commit, dirty = repo_state(path)
            pkg = replace(pkg, source=replace(pkg.source, git_commit=commit, git_dirty=dirty))
        out.append(pkg)
    return out


def redact_command(command: str | Sequence[str] | None) -> str | None:
    if command is None:
        return None
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return shlex.join(redact_argv(argv))


def snapshot(python: str | None = None, project: str | Path | None = ".",
             command: str | Sequence[str] | None = None, env_allow: Iterable[str] = (),
             environ: Mapping[str, str] | None = None, probe_gpu: bool = True) -> Lock:
    """Snapshot the environment of ``python`` (default: envlock's own interpreter).

    ``project`` is the directory whose git state is recorded (None: no git).
    ``command`` is the command that ran the experiment; secret-looking values are masked.
    """
    env = dict(os.environ if environ is None else environ)
    if project is not None and not Path(project).is_dir():
        raise UsageError(f"--project {project}: no such directory",
                         "pass the experiment's code directory")
    pending = start_probe(python)
    with ThreadPoolExecutor(max_workers=2) as pool:
        gpu_future = pool.submit(gpu.probe_gpu) if probe_gpu else None
        toolkit_future = pool.submit(gpu.probe_cuda_toolkit) if probe_gpu else None
        git_section = _git(project)
        raw = pending.result()
        gpu_section = gpu_future.result() if gpu_future else dict(gpu.NONE, status="not probed")
        toolkit = toolkit_future.result() if toolkit_future else None
    py = raw["python"]
    resolved = packages.resolve(raw["distributions"], py.get("site_dirs", []))
    pkgs = _with_git_state(resolved.packages)
    fw = frameworks.frameworks(pkgs, raw.get("frameworks", {}))
    if toolkit:
        gpu_section["cuda_toolkit"] = toolkit
    return Lock(
        python=system.python_section(py),
        os=system.os_section(raw["os"], py, env),
        packages=tuple(pkgs),
        frameworks=fw,
        gpu=gpu_section,
        git=git_section,
        runtime={"env": runtime.runtime_env(env, env_allow), "command": redact_command(command),
                 "withheld_env": runtime.secret_names(env, env_allow)},
        index=index.index_section(env, py.get("prefix")),
        shadowed=tuple(resolved.shadowed),
    )


def _git(project: str | Path | None) -> dict | None:
    if project is None:
        return None
    from envlock.snapshot.git import probe_git

    return probe_git(project)
