"""Progress lines for long operations: a live rich status on a terminal, plain lines in
CI logs (and when stderr is not a TTY). Results still go to stdout via cli.output.

Transfers (pushes, pulls, downloads, layer writes) report bytes done of the total, the
rate and the time left: on a terminal in the live status, in CI logs as a plain line
every :data:`EVERY` seconds (and one when a transfer that took longer ends). They go to
the :class:`Reporter` in use (the one entered last); with none, they are silent.
:func:`counting` wraps a reader, :func:`transfer` gives a :class:`Transfer` to advance."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

#: The step the latest Reporter announced: what an interrupt cut short.
_current: str | None = None
#: The Reporter transfers report to (the one entered last, until it closes).
_active: Reporter | None = None
#: Seconds between two plain progress lines of one transfer (CI logs).
EVERY = 10.0


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
        global _active
        _active = self
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        global _active
        if _active is self:
            _active = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    def transfer_line(self, line: str, final: bool = False) -> None:
        """A transfer's progress: the live status on a terminal, a plain line in logs."""
        if self.live:
            if self._status is None:
                from rich.console import Console

                self._status = Console(file=self.stream).status(line)
                self._status.start()
            self._status.update(line)
        else:
            self.stream.write(f"{self.prefix}:           {line}\n")
            self.stream.flush()


def size(n: float) -> str:
    """Bytes for people: 1.2 GB, 340.0 MB (decimal units, as registries show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Transfer:
    """Bytes moving (done of ``total``, which may grow while a pull learns its layers)."""

    def __init__(self, reporter: Reporter | None, label: str, total: int | None,
                 clock: Any = time.monotonic) -> None:
        self.reporter, self.label, self.total, self.clock = reporter, label, total, clock
        self.done = 0
        self.started = self._shown = clock()
        self._closed = False

    def line(self) -> str:
        """``label: 120.5 MB / 1.2 GB (10%), 25.1 MB/s, 43s left``."""
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.done / elapsed
        text = f"{self.label}: {size(self.done)}"
        if self.total:
            text += f" / {size(self.total)} ({100 * self.done / self.total:.0f}%)"
        text += f", {size(rate)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", {_duration((self.total - self.done) / rate)} left"
        return text

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.reporter is None:
            return
        every = 0.2 if self.reporter.live else EVERY
        if now - self._shown >= every:
            self._shown = now
            self.reporter.transfer_line(self.line())

    def close(self) -> None:
        """The end: in logs, one last line when the transfer took long enough to show."""
        if self._closed:
            return
        self._closed = True
        elapsed = self.clock() - self.started
        if self.reporter is not None and not self.reporter.live and elapsed >= EVERY:
            rate = self.done / max(elapsed, 1e-6)
            self.reporter.transfer_line(f"{self.label}: {size(self.done)} in "
                                        f"{_duration(elapsed)} ({size(rate)}/s)", final=True)

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def transfer(label: str, total: int | None = None) -> Transfer:
    """A transfer reported to the Reporter in use (silent without one)."""
    return Transfer(_active, label, total)


class Counting:
    """A reader whose reads advance a transfer (closed at the end of the data)."""

    def __init__(self, reader: Any, progress: Transfer) -> None:
        self.reader, self.progress = reader, progress

    def read(self, n: int = -1) -> bytes:
        data = self.reader.read(n)
        self.progress.advance(len(data))
        if not data or (self.progress.total and self.progress.done >= self.progress.total):
            self.progress.close()
        return bytes(data)


def counting(reader: Any, label: str, total: int | None) -> Any:
    """``reader`` reporting its bytes as a transfer; itself when no Reporter is in use."""
    return reader if _active is None else Counting(reader, transfer(label, total))


class Silent(Reporter):
    def __init__(self) -> None:
        super().__init__(live=False)

    def step(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass

    def transfer_line(self, line: str, final: bool = False) -> None:
        pass
