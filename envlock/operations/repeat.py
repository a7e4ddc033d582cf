"""``replay --repeat N`` / ``verify --repeat N``: the same replay N times, then noise
told from drift (:mod:`envlock.model.repeat`).

The spec is decided once (the same image, command, environment and resources for every
replay); each replay is a replay run of its own, concluded and tagged as a single one
is. Then every replay's run tree is read back and classified with the original's, and
each replay run gets the classification: the tag ``envlock.repeat`` (its one-line
verdict) and ``envlock/repeat.json`` (every metric's spread).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.errors import UsageError
from envlock.model import runrecord
from envlock.model.repeat import Repeat, classify

if TYPE_CHECKING:
    from envlock.config import Config
    from envlock.operations.replay import ReplayResult
    from envlock.operations.replayplan import ReplayRequest

REPEAT_TAG = runrecord.REPEAT
REPEAT_ARTIFACT = runrecord.REPEAT_ARTIFACT
MAX_REPEAT = 50


@dataclass
class RepeatResult:
    """N replays of one run and their classification (None: nothing was compared)."""

    results: list[ReplayResult]
    repeat: Repeat | None
    explanations: tuple[Any, ...] = ()  # model.explanations, when it does not pass

    @property
    def exit_code(self) -> int:
        return next((r.exit_code for r in self.results if r.exit_code != 0), 0)

    @property
    def passes(self) -> bool:
        return self.exit_code == 0 and bool(self.repeat and self.repeat.passes)

    def to_dict(self) -> dict[str, Any]:
        first = self.results[0].to_dict() if self.results else {}
        return {"original_run_id": first.get("original_run_id"), "image": first.get("image"),
                "exit_code": self.exit_code,
                "replay_run_ids": [r.replay_run_id for r in self.results],
                "repeat": self.repeat.to_dict() if self.repeat else None,
                "explanations": [e.to_dict() for e in self.explanations],
                "replays": [r.to_dict() for r in self.results]}


def check_repeat(times: int, *, track: bool = True) -> int:
    """A valid --repeat, or a one-line UsageError."""
    if not 1 <= times <= MAX_REPEAT:
        raise UsageError(f"--repeat {times} is out of range", f"give a number of replays "
                         f"from 1 to {MAX_REPEAT} (3 tells noise from drift)")
    if times > 1 and not track:
        raise UsageError("--repeat compares the replays' runs: it cannot run with --no-track",
                         "drop --no-track")
    return times


def replay_repeated(request: ReplayRequest, times: int, *, engine: EngineLike,
                    tracker: TrackerLike, config: Config,
                    notify: Callable[[str, str], None] | None = None,
                    output: Callable[[bytes], None] | None = None) -> RepeatResult:
    """Replay ``request`` ``times`` times on this host (one spec for all), classify."""
    from envlock.operations import replayplan
    from envlock.operations.replay import replay

    spec, context = replayplan.local(request, tracker=tracker, config=config, notify=notify)
    results = []
    for number in range(1, times + 1):
        if notify:
            notify("note", f"replay {number} of {times}")
        results.append(replay(spec, engine=engine, tracker=tracker, context=context,
                              output=output, report=False))
    result = concluded(results, tracker, spec.checks.policy)
    ids = [str(r.replay_run_id) for r in results if r.replay_run_id]
    if result.repeat is not None and not result.passes:
        from envlock.operations.explain import explain_replay, replay_facts

        result.explanations = explain_replay(
            tracker, ids, replay_facts(spec, context, engine, result.repeat))
    if result.repeat is not None:
        from envlock.operations.replay import log_report

        results[0].warnings += log_report(tracker, spec.run_id, ids, spec.checks.policy)
    return result


def concluded(results: list[ReplayResult], tracker: TrackerLike, policy: Any
              ) -> RepeatResult:
    """The replays classified against the original, recorded on every replay run."""
    done = [r for r in results if r.replay_run_id and r.comparison is not None]
    if not results or len(done) < len(results):
        return RepeatResult(results, None)
    original = tracker.run_tree(results[0].original_run_id)
    trees = [(r.comparison, tracker.run_tree(str(r.replay_run_id))) for r in done]
    found = classify(original, [(c, t) for c, t in trees if c is not None], policy)
    failed = [f"replay {n}: exit code {r.exit_code}" for n, r in enumerate(results, 1)
              if r.exit_code != 0]
    if failed:
        found = replace(found, problems=(*failed, *found.problems))
    ids = [str(r.replay_run_id) for r in results]
    record = json.dumps({**found.to_dict(), "original_run_id": results[0].original_run_id,
                         "replay_run_ids": ids}, indent=1, sort_keys=True)
    for replay_id in ids:
        tracker.set_tags(replay_id, {REPEAT_TAG: found.verdict[:5000],
                                     runrecord.REPEAT_REPLAYS: ",".join(ids)[:5000]})
        tracker.log_text(replay_id, REPEAT_ARTIFACT, record)
    return RepeatResult(results, found)
