"""Every subprocess envlock starts goes through :func:`run`: logged, bounded, translated."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO

#: The types of what :func:`start` returns and raises, for callers outside the adapters.
Popen = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired


def _debug(message: str, *args: object) -> None:
    """Log through ``logging`` only under --debug (importing it costs 5 ms per command)."""
    if os.environ.get("ENVLOCK_DEBUG"):
        import logging

        logging.getLogger("envlock.adapters.proc").debug(message, *args)


def run(cmd: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float | None = 120,
        check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` capturing stdout/stderr as bytes. Raises OSError as is and, when it
    outlives ``timeout`` (it is then killed), :class:`envlock.errors.CommandTimeout` —
    a ``TimeoutError``, unlike ``subprocess.TimeoutExpired``."""
    _debug("run: %s", shlex.join(cmd))
    try:
        result = subprocess.run(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                                input=input, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        from envlock.errors import CommandTimeout

        _debug("timed out after %ss: %s", timeout, shlex.join(cmd))
        raise CommandTimeout(shlex.join([os.path.basename(cmd[0]), *cmd[1:3]]),
                             timeout or 0) from None
    _debug("exit %s: %s", result.returncode, shlex.join(cmd))
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, list(cmd), result.stdout,
                                            result.stderr)
    return result


def start(cmd: Sequence[str], *, cwd: str | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the background (stdout/stderr piped) so other probes can overlap it."""
    _debug("start: %s", shlex.join(cmd))
    return subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


def feed(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
         stderr: int | object = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start ``cmd`` reading its work from a pipe on stdin (stdout discarded; ``stderr``:
    a file, so that a chatty worker can never block on a full pipe)."""
    _debug("feed: %s", shlex.join(cmd))
    return subprocess.Popen(list(cmd), env=None if env is None else dict(env),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=stderr)  # type: ignore[arg-type]


def detach(cmd: Sequence[str]) -> None:
    """Start ``cmd`` in a session of its own, not waited for (it outlives envlock)."""
    _debug("detach: %s", shlex.join(cmd))
    subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def background(cmd: Sequence[str], log: IO[bytes], stdin: bytes | None = None) -> int:
    """Start ``cmd`` in a session of its own with stdout and stderr in ``log``, not waited
    for; ``stdin`` (a line or so, far below a pipe's buffer: never blocks) is written to
    its standard input, which is then closed. Its pid."""
    _debug("background: %s", shlex.join(cmd))
    process = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                               start_new_session=True)
    if stdin is not None:
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(stdin)
    return process.pid
