"""Pure: the one line a capture or build ends with — the time of each phase (as the
build's timer recorded them), the image's size, and the bytes downloaded, reused from
the wheel cache and pushed."""

from __future__ import annotations

from collections.abc import Mapping

from envlock.model.sizes import human

#: The build's phases in the order they run, with the words the line uses.
PHASES = (("code", "code"), ("base", "base"), ("provision", "download"),
          ("install", "install"), ("bytecode", "bytecode"), ("verify", "verify"),
          ("env_layer", "layer"), ("code_layer", "code layer"), ("load", "load"),
          ("verify_image", "in-engine proof"), ("push", "push"))


def phases(timings: Mapping[str, float]) -> str:
    """``download 12.3s, install 4.1s, …``: the known phases in order, then any other."""
    known = dict(PHASES)
    parts = [f"{word} {timings[name]:.1f}s" for name, word in PHASES if name in timings]
    parts += [f"{name} {value:.1f}s" for name, value in sorted(timings.items())
              if name not in known]
    return ", ".join(parts) or "nothing built"


def summary_line(timings: Mapping[str, float], figures: Mapping[str, int]) -> str:
    """The summary: ``figures`` holds ``image_bytes``, ``downloaded_bytes``,
    ``reused_bytes`` and ``pushed_bytes`` (a missing one reads as 0)."""
    size = figures.get("image_bytes")
    return (f"{phases(timings)}; image {human(size) if size else '-'}; downloaded "
            f"{human(figures.get('downloaded_bytes', 0))}, reused from the wheel cache "
            f"{human(figures.get('reused_bytes', 0))}, pushed "
            f"{human(figures.get('pushed_bytes', 0))}")
