"""Real headless Chromium (Debian's `chromium`, installed by scripts/infra.sh): load a page
from a file, collect what its console said, take a screenshot. Used by the report tests
and bench/bench_report.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: How Chromium logs a console message with --enable-logging=stderr (any level).
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$")


class BrowserMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Loaded:
    console: list[str]  # every console message (a page without script should have none)
    screenshot: Path
    seconds: float  # wall time of the whole headless run


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise BrowserMissing("chromium is not installed: run `bash scripts/infra.sh up` "
                             "(it installs Debian's chromium)")
    return found


def load(page: Path, screenshot: Path, width: int = 1200, height: int = 2400) -> Loaded:
    """Open ``page`` headless, wait for it to load, screenshot the window."""
    started = time.monotonic()
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
                           "--no-first-run", "--disable-extensions",
                           f"--window-size={width},{height}", f"--screenshot={screenshot}",
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    if done.returncode != 0 or not screenshot.exists():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    console = [m.group(1) for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Loaded(console, screenshot, seconds)


def colour_pixels(screenshot: Path, rgb: tuple[int, int, int], slack: int = 40) -> int:
    """How many pixels of the screenshot are close to ``rgb``."""
    import numpy
    from PIL import Image

    with Image.open(screenshot) as image:
        pixels = numpy.asarray(image.convert("RGB"), dtype="int16")
    close = numpy.abs(pixels - numpy.array(rgb, dtype="int16")) <= slack
    return int(close.all(axis=-1).sum())
