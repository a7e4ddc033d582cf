"""Pure: sizes as people write them (``512m``, ``2g``, ``1.5GiB``, bytes) and read them
(``64 MiB``, ``23.5 GiB``), for --shm-size, --memory and the code size cap alike."""

from __future__ import annotations

import re

from envlock.errors import UsageError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse(text: str | int, what: str) -> int:
    """``64m``, ``2g``, ``1.5GiB``, ``500k`` or a number of bytes -> bytes (binary units,
    as Docker reads them). ``what`` names the setting in the error."""
    match = _SIZE.fullmatch(str(text))
    value = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0
    if not match or value < 1:
        raise UsageError(f"{what} {text!r} is not a size",
                         "write bytes or a number with k, m or g, e.g. 512m, 2g or 1.5GiB")
    return int(value)


def human(size: int | None) -> str:
    """Bytes for people: ``64 MiB``, ``23.5 GiB``; ``-`` when unknown."""
    if size is None:
        return "-"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"
