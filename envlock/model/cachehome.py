"""Where envlock keeps what it reuses between runs: ``$ENVLOCK_CACHE``, else
``~/.cache/envlock`` (an empty ``ENVLOCK_CACHE`` counts as unset), read when called."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    return Path(os.environ.get("ENVLOCK_CACHE") or Path.home() / ".cache" / "envlock")
