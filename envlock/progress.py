"""Progress lines for long operations: a live rich status on a terminal, plain lines in
CI logs (and when stderr is not a TTY). Results still go to stdout via cli.output."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

#: The step the latest Reporter announced: what an interrupt cut short.
_current: str | None = None


def current_step() -> str | None:
    """The step in progress (for "interrupted while …"), None before the first one."""
    return _current


class Reporter:
    def __init__(self, prefix: str = "envlock", stream: Any = None, live: bool | None = None):
        self.prefix = prefix
        self.stream = stream or sys.stderr
        if live is None:  # a live status only on a terminal, never in CI logs
            live = self.stream.isatty() and not os.environ.get("CI")
        self.live = live
        self._status: Any = None
        self._started = time.monotonic()

    def step(self, message: str) -> None:
        """A new phase: printed as a line, and shown as a spinner while it runs on a TTY."""
        global _current
        _current = message
        elapsed = time.monotonic() - self._started
        if self.live:
            from rich.console import Console

            if self._status is None:
                self._status = Console(file=self.stream).status(message)
                self._status.start()
            else:
                self._status.update(message)
            self._status.console.log(message)
        else:
            self.stream.write(f"{self.prefix}: [{elapsed:6.1f}s] {message}\n")
            self.stream.flush()

    def detail(self, message: str) -> None:
        if self.live and self._status is not None:
            self._status.update(message)
        elif not self.live:
            self.stream.write(f"{self.prefix}:           {message}\n")

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class Silent(Reporter):
    def __init__(self) -> None:
        super().__init__(live=False)

    def step(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass
