"""Every subprocess envlock starts goes through :func:`run`: logged, bounded, translated."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence

log = logging.getLogger("envlock.proc")


def run(cmd: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float | None = 120,
        check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` capturing stdout/stderr as bytes. Raises OSError/TimeoutExpired as is."""
    log.debug("run: %s", shlex.join(cmd))
    result = subprocess.run(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                            input=input, capture_output=True, timeout=timeout, check=False)
    log.debug("exit %s: %s", result.returncode, shlex.join(cmd))
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, list(cmd), result.stdout,
                                            result.stderr)
    return result


def start(cmd: Sequence[str], *, cwd: str | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the background (stdout/stderr piped) so other probes can overlap it."""
    log.debug("start: %s", shlex.join(cmd))
    return subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
