"""``envlock report RUN``, and the same page logged on every replay run: one
self-contained HTML file (envlock.model.htmlreport) from what the store holds — the
original's and the replay's run trees (compared again with the project's metric policy),
the replay's verdict, explanations and ``--repeat`` record, and the original's lock
against the replay's recorded host.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import TrackerLike
from envlock.errors import EnvlockError, UsageError
from envlock.model import runrecord
from envlock.model.htmlreport import ARTIFACT, ReportData, render

if TYPE_CHECKING:
    from envlock.model.compare import MetricPolicy


def plotting_available() -> bool:
    """matplotlib draws the plots (``pip install 'envlock[report]'``)."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None


def replay_of(tracker: TrackerLike, run_id: str) -> tuple[str, str]:
    """(original, replay) for a replay run, or an original run and its newest replay."""
    run = tracker.run(run_id)
    original = run.tags.get(runrecord.REPLAY_OF)
    if original:
        return original, run.run_id
    replays = sorted(tracker.runs_tagged(run.experiment_id, runrecord.REPLAY_OF, run.run_id),
                     key=lambda r: (r.start_time or 0, r.run_id))
    if not replays:
        raise UsageError(f"run {run_id} has no replay to report on",
                         f"replay it first: envlock replay {run_id}")
    return run.run_id, replays[-1].run_id


def gather(tracker: TrackerLike, original_id: str, replay_id: str,
           policy: MetricPolicy) -> ReportData:
    """What the page shows, read from the store."""
    from envlock.model.compare import compare_tree

    original, replay = tracker.run_tree(original_id), tracker.run_tree(replay_id)
    tags = tracker.run(replay_id).tags
    comparison = compare_tree(original, replay, policy)
    verdict = tags.get(runrecord.VERDICT) or "no verdict (still running?)"
    facts = {"image": tags.get(runrecord.IMAGE), "exit code": tags.get(runrecord.EXIT_CODE),
             "replay host": tags.get(runrecord.REPLAY_HOST_PREFIX + "cpu"),
             "replay GPU": tags.get(runrecord.REPLAY_HOST_PREFIX + "gpu")}
    return ReportData(original_run_id=original_id, replay_run_id=replay_id, verdict=verdict,
                      comparison=comparison, original=original, replay=replay,
                      explanations=_json(tracker, replay_id, "explanations.json") or (),
                      host_changes=_host_changes(tracker, original_id, replay_id),
                      repeat=_json(tracker, replay_id, "repeat.json"),
                      facts={k: v for k, v in facts.items() if v})


def _json(tracker: TrackerLike, run_id: str, name: str) -> Any:
    try:
        data = tracker.artifact_bytes(run_id, f"envlock/{name}", 16 << 20)
    except EnvlockError:
        return None
    return json.loads(data) if data else None


def _host_changes(tracker: TrackerLike, original_id: str, replay_id: str) -> tuple[Any, ...]:
    import yaml

    from envlock.model.replayhost import ARTIFACT as HOST
    from envlock.model.replayhost import host_changes
    from envlock.operations.targets import captured

    try:
        lock, _run = captured(tracker, original_id)
        data = tracker.artifact_bytes(replay_id, f"envlock/{HOST}", 16 << 20)
    except EnvlockError:
        return ()
    snap = yaml.safe_load(data) if data else None
    return host_changes(lock, snap) if isinstance(snap, dict) else ()


def log_report(tracker: TrackerLike, original_id: str, replay_id: str,
               policy: MetricPolicy) -> str | None:
    """The page logged on the replay run as ``envlock/report.html`` (None: matplotlib is
    not installed, nothing logged)."""
    if not plotting_available():
        return None
    page = render(gather(tracker, original_id, replay_id, policy))
    tracker.log_text(replay_id, ARTIFACT, page)
    return page
