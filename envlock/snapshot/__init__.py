"""Take a snapshot of an environment: the ordered probes that fill a :class:`Lock`.

The interpreter probe runs in a child process (the interpreter being locked);
git, GPU and toolkit probes overlap it in this process. Everything that decides
what raw facts mean lives in pure modules (packages, frameworks, system, runtime).
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from envlock.errors import UsageError
from envlock.snapshot.interpreter import start_probe

if TYPE_CHECKING:
    from envlock.model.lockfile import Lock, Package
    from envlock.model.locksections import (
        CodeSection,
        GitSection,
        HostSection,
        IndexSection,
        OsSection,
        PythonSection,
    )
    from envlock.snapshot.directory import Rules


def _with_git_state(pkgs: list[Package]) -> list[Package]:
    """Editable and local-directory packages: record their repository's commit and dirtiness."""

    from dataclasses import replace

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
    from envlock.model.redact import redact_argv

    if command is None:
        return None
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return shlex.join(redact_argv(argv))


def snapshot(python: str | None = None, project: str | Path | None = ".",
             command: str | Sequence[str] | None = None, env_allow: Iterable[str] = (),
             environ: Mapping[str, str] | None = None, probe_gpu: bool = True,
             exclude: tuple[str | Path, ...] = (), code_rules: Rules | None = None) -> Lock:
    """Snapshot the environment of ``python`` (default: envlock's own interpreter).

    ``project`` is the experiment's code directory (None: no code recorded): its git state,
    or outside git every file it packs, with ``code_rules`` (deny list, size cap).
    ``command`` is the command that ran the experiment; secret-looking values are masked.
    """
    return take(Request(python, project, command, tuple(env_allow), environ, probe_gpu,
                        exclude=exclude, code_rules=code_rules))[0]


@dataclass(frozen=True)
class Request:
    """What to snapshot (the parameters of :func:`snapshot`); ``deep``: also verify every
    installed file against its RECORD."""

    python: str | None = None
    project: str | Path | None = "."
    command: str | Sequence[str] | None = None
    env_allow: tuple[str, ...] = ()
    environ: Mapping[str, str] | None = None
    probe_gpu: bool = True
    deep: bool = False
    exclude: tuple[str | Path, ...] = ()
    code_rules: Rules | None = None


def take(request: Request) -> tuple[Lock, dict[str, Any]]:
    """:func:`snapshot`, also returning the probe's raw facts (with ``deep``: the RECORD
    verification of every installed file)."""
    from envlock.model.lockfile import Lock
    from envlock.snapshot import frameworks, gpu, packages, rebuilt, runtime, system

    python, project, command = request.python, request.project, request.command
    env_allow, environ, probe_gpu = request.env_allow, request.environ, request.probe_gpu
    exclude, code_rules, deep = request.exclude, request.code_rules, request.deep
    env = dict(os.environ if environ is None else environ)
    if project is not None and not Path(project).is_dir():
        raise UsageError(f"--project {project}: no such directory",
                         "pass the experiment's code directory")
    pending = start_probe(python, deep=deep)
    gpu_job = _Background(gpu.probe_gpu if probe_gpu else lambda: dict(gpu.NONE,
                                                                       status="not probed"))
    toolkit_job = _Background(gpu.probe_cuda_toolkit if probe_gpu else lambda: None)
    if project is not None:  # envlock's and MLflow's local state is never the experiment's code
        exclude = (*exclude, *(Path(project) / name for name in LOCAL_STATE))
    git_section = _git(project, exclude, code_rules.allow if code_rules else ())
    code_section = _directory(project, exclude, code_rules) if git_section is None else None
    raw = pending.result()
    gpu_section, toolkit = gpu_job.result(), toolkit_job.result()
    py = raw["python"]
    resolved = packages.resolve(raw["distributions"], py.get("site_dirs", []))
    pkgs = _with_git_state(resolved.packages)
    pkgs = packages.with_origins(pkgs, rebuilt.distribution_wheels(pkgs))
    fw = frameworks.frameworks(pkgs, raw.get("frameworks", {}))
    if toolkit:
        gpu_section["cuda_toolkit"] = toolkit
    lock = Lock(
        python=cast("PythonSection", system.python_section(py)),
        os=cast("OsSection", system.os_section(raw["os"], py, env)),
        packages=tuple(pkgs),
        frameworks=fw,
        gpu=gpu_section,
        git=cast("GitSection | None", git_section),
        code=cast("CodeSection | None", code_section),
        runtime={"env": runtime.runtime_env(env, env_allow), "command": redact_command(command),
                 "withheld_env": runtime.secret_names(env, env_allow)},
        index=cast("IndexSection", _index(env, py.get("prefix"), project, pkgs)),
        shadowed=tuple(resolved.shadowed),
        host=cast("HostSection | None", _host()),
    )
    return lock, raw


def _index(env: Mapping[str, str], prefix: str | None, project: str | Path | None,
           pkgs: list[Package]) -> dict[str, Any]:
    """The configured indexes; for a uv project also its uv.lock (see ``model.uvlock``)."""
    from envlock.snapshot.index import index_section
    from envlock.snapshot.uvproject import uv_lock_section

    section = index_section(env, prefix)
    uv_lock = uv_lock_section(project, pkgs)
    return {**section, "uv_lock": uv_lock} if uv_lock else section


#: Local state of envlock and of MLflow's embedded defaults (store, artifacts) in a project.
LOCAL_STATE = (".envlock", "mlruns", "mlartifacts", "mlflow.db")


class _Background:
    """Run a probe in a thread (they wait on subprocesses and files, not the CPU)."""

    def __init__(self, func: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(func,), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[[], Any]) -> None:
        try:
            self._value = func()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _host() -> dict[str, Any] | None:
    """The machine's CPU, memory and /dev/shm; None when /proc cannot be read (not Linux)."""
    from envlock.snapshot.host import probe_host

    try:
        return probe_host()
    except (OSError, AttributeError):
        return None


def _git(project: str | Path | None, exclude: tuple[str | Path, ...] = (),
         allow: tuple[str, ...] = ()) -> dict[str, Any] | None:
    if project is None:
        return None
    from envlock.snapshot.git import probe_git

    return probe_git(project, exclude, allow)


def _directory(project: str | Path | None, exclude: tuple[str | Path, ...],
               rules: Rules | None) -> dict[str, Any] | None:
    if project is None:
        return None
    from envlock.snapshot.directory import Rules, probe_directory

    return probe_directory(project, rules or Rules(), exclude)
