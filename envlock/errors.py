"""One error root for everything envlock reports to a user.

Every error carries a one-line message that says what is wrong and what to do,
and the exit code the CLI uses for it. Foreign exceptions are translated at the
boundary (``raise LockfileError(...) from exc``) so tracebacks never reach users
unless they ask for them with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path

#: Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_DRIFT = 1  # a check failed: drift, differences, a run that did not reproduce
EXIT_USAGE = 2  # bad input or an environment/infrastructure error
EXIT_TIMEOUT = 124  # a replay ran past its --timeout and was stopped (as timeout(1) exits)
# Interrupted: 128 + the signal number, 130 for SIGINT (Ctrl-C), 143 for SIGTERM.


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (a CI runner cancelling a job), raised by the CLI's handler.

    A ``KeyboardInterrupt``, so one set of ``finally`` / ``except BaseException`` cleanups
    (staging containers, temporary images, partial archives, replay runs marked FAILED)
    serves both signals. ``outcome`` says what the interrupted command left recorded; an
    operation that did record something (a run marked FAILED) says so."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum, self.name = signum, name
        self.outcome = "nothing was recorded"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class EnvlockError(Exception):
    """Base of all user-facing envlock errors."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class LockfileError(EnvlockError):
    """A lockfile that cannot be read, parsed or trusted."""

    def __init__(self, path: str | Path, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {problem}", hint)
        self.path = str(path)
        self.problem = problem


class InterpreterError(EnvlockError):
    """The Python interpreter to snapshot is missing or is not a Python."""

    def __init__(self, python: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"--python {python}: {problem}", hint)
        self.python = python


class ProbeError(EnvlockError):
    """A snapshot probe failed in a way that would make the lock incomplete."""


class CommandTimeout(EnvlockError, TimeoutError):
    """A command envlock ran did not finish in time (a hung nvidia-smi on a wedged GPU
    host, a git on a dead network filesystem). It was killed; probes record it."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"`{command}` did not finish within {timeout:g} s and was stopped",
                         "check that the machine is healthy (a wedged GPU or a hung "
                         "filesystem), then retry")
        self.command = command
        self.timeout = timeout


class UsageError(EnvlockError):
    """Arguments that cannot work together or point at nothing."""


class ReplayTimeout(EnvlockError):
    """A replay's container (or pod) ran past ``--timeout`` and was stopped. Exits with
    :data:`EXIT_TIMEOUT`; ``tail`` holds the container's last output lines."""

    exit_code = EXIT_TIMEOUT

    def __init__(self, seconds: float, tail: str = "", where: str = "the container") -> None:
        said = f"; its last output lines: {tail}" if tail else ""
        super().__init__(f"the replay ran past its timeout of {seconds:g} s; {where} was "
                         f"stopped{said}", "raise --timeout (or the config's timeout), or "
                         "find what the experiment waited on in its last output lines")
        self.seconds = seconds
        self.tail = tail
