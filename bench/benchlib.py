"""Helpers the benchmarks share: running commands with timings, the test infrastructure,
medians and envlock's JSON results. Imported by the bench scripts (their folder is on
``sys.path`` when they run as scripts)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CMD_TIMEOUT = 1800
#: Where ``infra_env()``'s registries keep their data (``open/data``, ``auth/data``): a
#: benchmark that measures registry growth reads the open one's blob store there.
REGISTRY_WORKDIR: Path | None = None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None,
        timeout: float = CMD_TIMEOUT,
        check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    dt = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise BenchError(f"exit {proc.returncode}: (cd {cwd or '.'} && {shlex.join(cmd)})\n"
                         f"stdout: {proc.stdout.strip()[-1500:]}\n"
                         f"stderr: {proc.stderr.strip()[-3000:]}")
    return dt, proc


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, unit: str = "s") -> str:
    return "n/a" if x is None else f"{x:.2f} {unit}".rstrip()


def infra_env() -> dict[str, str]:
    """The engine and base image (``scripts/infra.sh up``, root-only, reused when up) and
    both test registries on free ports (``tests/registry.py``), stopped when the bench exits;
    the ``ENVLOCK_TEST_*`` values as a dict."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "infra.sh"), "up"],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise BenchError(f"scripts/infra.sh up failed:\n{proc.stderr[-2000:]}")
    for line in proc.stdout.splitlines():  # DOCKER_HOST, when it had to start an engine
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            os.environ[key] = shlex.split(value)[0] if value else ""
    return _registries()


def _registries() -> dict[str, str]:
    global REGISTRY_WORKDIR
    sys.path.insert(0, str(REPO))
    from tests.registry import RegistryError, session

    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="envlock-bench-")))
    REGISTRY_WORKDIR = workdir
    try:
        return stack.enter_context(session(workdir))
    except RegistryError as exc:
        raise BenchError(f"test registries: {exc}") from exc


def result_of(proc: subprocess.CompletedProcess, what: str) -> dict:
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{what}: stdout is not JSON: {proc.stdout[-500:]!r}\n"
                         f"stderr: {proc.stderr[-1500:]}") from exc
    if not data.get("ok"):
        raise BenchError(f"{what}: not ok: {json.dumps(data)[:1500]}")
    return data["result"]
