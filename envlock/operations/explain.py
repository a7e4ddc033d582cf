"""Why artifacts differ: the text, JSON and YAML files that differ between an original
run and its replay are read from the tracking store (the tracker is passed in) and
explained by their first differing line (envlock.model.artifactdiff)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from envlock.adapters.protocols import TrackerLike
from envlock.model.artifactdiff import MAX_BYTES, explain, is_text
from envlock.model.compare import ArtifactRow

#: At most this many differing files are read (each at most MAX_BYTES, both sides).
MAX_FILES = 50


def explain_artifacts(tracker: TrackerLike, rows: Iterable[ArtifactRow],
                      runs: Mapping[str, tuple[str, str]]) -> tuple[ArtifactRow, ...]:
    """``rows`` with a reason on each differing text file; ``runs`` maps a row's run
    label to (original run id, replay run id). Logged models' files (``models/…``) are
    not run artifacts and keep no reason."""
    out, read = [], 0
    for row in rows:
        ids = runs.get(row.run)
        if row.status == "differs" and ids and is_text(row.path) \
                and not row.path.startswith("models/") and read < MAX_FILES:
            read += 1
            row = replace(row, reason=_reason(tracker, ids, row.path))
        out.append(row)
    return tuple(out)


def _reason(tracker: TrackerLike, ids: tuple[str, str], path: str) -> str:
    original = tracker.artifact_bytes(ids[0], path, MAX_BYTES)
    replay = tracker.artifact_bytes(ids[1], path, MAX_BYTES)
    if original is None or replay is None:
        return f"over {MAX_BYTES >> 20} MiB: compared by sha256 only"
    return explain(path, original, replay)
