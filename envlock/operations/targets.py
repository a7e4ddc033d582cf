"""A lockfile path or an MLflow run ID: where `show`, `diff` and `build --from-run` read a lock."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError
from envlock.model import lockfile, runrecord
from envlock.model.lockfile import Lock

if TYPE_CHECKING:
    from envlock.adapters.tracking import RunData
    from envlock.config import Config

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
    if runrecord.LOCK_DIGEST not in run.tags or (image and not run.tags.get(runrecord.IMAGE)):
        what = "image" if image and runrecord.LOCK_DIGEST in run.tags else "lock"
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
    if runrecord.REPLAY_OF not in run.tags:
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


@dataclass(frozen=True)
class BuildSource:
    """What ``build`` builds: a lockfile's lock, or (``--from-run``) a captured run's."""

    lock: Lock
    label: str  # how the audit gate names it
    recorded: dict[str, str] = field(default_factory=dict)  # the run's tags, with --from-run
    created: str | None = None  # the run's start: the same code image again
    run_id: str | None = None
    tag: str | None = None

    def settings(self, cfg: Config, registry: str | None, base_image: str | None
                 ) -> tuple[str | None, str | None]:
        """(registry, base image): the flag, else the config; a run's recorded base last."""
        base = cfg.base_image_for(self.lock.python["version"], base_image)
        return cfg.get("registry", registry), base or self.recorded.get(runrecord.BASE_IMAGE)


def one_source(lock_path: Path | None, from_run: str | None) -> None:
    """A build reads a lockfile or a run, not both."""
    from envlock.errors import UsageError

    if from_run and lock_path:
        raise UsageError("give a lockfile or --from-run, not both",
                         "drop LOCK to rebuild the run, or drop --from-run")


def for_build(lock_path: Path | None, from_run: str | None, run_id: str | None = None,
              tag: str | None = None) -> BuildSource:
    """The lock to build, with the run ID and tag a rebuild of ``from_run`` defaults to."""
    one_source(lock_path, from_run)
    if not from_run:
        path = lock_path or Path(lockfile.DEFAULT_LOCKFILE)
        return BuildSource(lockfile.load(path), str(lock_path or path), run_id=run_id, tag=tag)
    lock, run = load_run(from_run)
    return BuildSource(lock, f"run {from_run}", run.tags, run.started, run_id or from_run,
                       tag or f"{from_run}-rebuild")
