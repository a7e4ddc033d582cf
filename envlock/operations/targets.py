"""A lockfile path or an MLflow run ID: where `show`, `diff` and `build --from-run` read a lock."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError
from envlock.model import lockfile
from envlock.model.lockfile import Lock

if TYPE_CHECKING:
    from envlock.adapters.tracking import RunData

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def load(target: str | Path) -> Lock:
    """The lock at ``target``: a file, else the ``envlock/envlock.lock.yaml`` artifact of the
    MLflow run with that ID (any store, including a remote tracking server)."""
    path = Path(target)
    if path.exists() or not _RUN_ID.fullmatch(str(target)):
        return lockfile.load(path)
    return load_run(str(target))[0]


def load_run(run_id: str) -> tuple[Lock, RunData]:
    """The lock of a captured MLflow run, and the run (tags, start time, ...)."""
    from envlock.operations.connect import open_tracker

    return captured(open_tracker(), run_id)


def captured(tracker: TrackerLike, run_id: str, *, image: bool = False
             ) -> tuple[Lock, RunData]:
    """The one way to read a captured run: the run, checked to have been captured (and,
    with ``image``, to point at an image), and its lock from the run's artifacts."""
    from envlock.errors import UsageError

    run = tracker.run(run_id)
    if "envlock.lock_digest" not in run.tags or (image and not run.tags.get("envlock.image")):
        what = "image" if image and "envlock.lock_digest" in run.tags else "lock"
        raise UsageError(f"run {run_id} has no envlock {what}",
                         f"capture it first: envlock capture --run-id {run_id}")
    with tempfile.TemporaryDirectory(prefix="envlock-run-") as tmp:
        lock = lockfile.load(tracker.download(run_id, lockfile.DEFAULT_LOCKFILE, Path(tmp)))
    return lock, run


def load_replay_host(target: str | Path) -> tuple[dict[str, Any], RunData] | None:
    """A replay run's recorded host (``envlock/replay-host.yaml``) and the run; None when
    ``target`` is not a replay run (a lockfile, or a captured original)."""
    import yaml

    from envlock.errors import UsageError
    from envlock.model.replayhost import ARTIFACT
    from envlock.operations.connect import open_tracker

    if Path(target).exists() or not _RUN_ID.fullmatch(str(target)):
        return None
    tracker = open_tracker()
    run = tracker.run(str(target))
    if "envlock.replay_of" not in run.tags:
        return None
    with tempfile.TemporaryDirectory(prefix="envlock-run-") as tmp:
        try:
            path = tracker.download(run.run_id, ARTIFACT, Path(tmp))
        except EnvlockError as exc:
            raise UsageError(f"replay run {target} has no record of its host ({exc.message})",
                             "it was replayed by an older envlock; replay it again to record one") \
                from exc
        snap = yaml.safe_load(path.read_text(encoding="utf-8"))
    return (snap if isinstance(snap, dict) else {}), run
