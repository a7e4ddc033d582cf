"""Why a replay differs. Artifacts: the text, JSON and YAML files that differ between an
original run and its replay are read from the tracking store (the tracker is passed in)
and explained by their first differing line (envlock.model.artifactdiff). The replay as a
whole: the facts of the original's lock and of this replay gathered, ranked explanations
made of them (envlock.model.explanations) and recorded on the replay runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.model import runrecord
from envlock.model.artifactdiff import MAX_BYTES, explain, is_text
from envlock.model.checkpoints import is_checkpoint
from envlock.model.compare import ArtifactRow
from envlock.model.explanations import Explanation, Facts
from envlock.model.imagediff import is_image

if TYPE_CHECKING:
    from envlock.model.repeat import Repeat
    from envlock.model.replayspec import ReplaySpec
    from envlock.operations.replayplan import Context

EXPLANATIONS = "explanations.json"  # envlock/explanations.json on a replay run
EXPLANATION_TAG = runrecord.EXPLANATION  # the most likely one, in one line

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
        readable = is_text(row.path) or is_checkpoint(row.path) or is_image(row.path)
        if row.status == "differs" and ids and readable \
                and not row.path.startswith("models/") and read < MAX_FILES:
            read += 1
            row = replace(row, reason=_reason(tracker, ids, row.path))
        out.append(row)
    return tuple(out)


def _reason(tracker: TrackerLike, ids: tuple[str, str], path: str) -> str:
    """Text, JSON, YAML: the first differing line; checkpoints: tensor by tensor; images:
    pixel by pixel."""
    from envlock.model import checkpoints, imagediff

    how, limit = ((checkpoints.explain, checkpoints.MAX_BYTES) if is_checkpoint(path) else
                  (imagediff.explain, imagediff.MAX_BYTES) if is_image(path) else
                  (explain, MAX_BYTES))
    original = tracker.artifact_bytes(ids[0], path, limit)
    replay = tracker.artifact_bytes(ids[1], path, limit)
    if original is None or replay is None:
        return f"over {limit >> 20} MiB: compared by sha256 only"
    return how(path, original, replay)


def replay_facts(spec: ReplaySpec, context: Context, engine: EngineLike | None,
                 repeat: Repeat | None = None) -> Facts:
    """What the original recorded (its lock, its tags) beside what this replay had. No
    ``engine`` (a Kubernetes Job): the image's labels are not read, and the replay's host
    is what ``context`` knows of it (nothing, before the Job is scheduled)."""
    from envlock.operations.replayplan import BASE_ENV
    from envlock.snapshot.runtime import DEFAULT_ALLOW

    locked: Any = context.locked
    info = engine.image(spec.image) if engine is not None else None
    return Facts(original_host=locked.get("host"), replay_host=context.host,
                 original_gpu=locked.get("gpu"), replay_gpu=context.host_gpu,
                 recorded_env=(locked.get("runtime") or {}).get("env") or {},
                 replay_env={k: v for k, v in spec.env.items() if k not in BASE_ENV
                             and context.inputs_env.get(k) != v},
                 original_command=context.original_command, replay_command=spec.command,
                 run_tags=context.run.tags, image_labels=info.labels if info else None,
                 repeat=repeat, numerics=tuple(DEFAULT_ALLOW),
                 inputs=tuple((change, "as recorded", "changed")
                              for change in context.inputs_changed))


def explain_replay(tracker: TrackerLike, replay_ids: list[str], facts: Facts
                   ) -> tuple[Explanation, ...]:
    """The ranked explanations, recorded on each replay run (``envlock/explanations.json``
    and the tag ``envlock.explanation``: the most likely one)."""
    import json

    from envlock.model.explanations import explain as explain_facts

    found = explain_facts(facts)
    text = json.dumps([e.to_dict() for e in found], indent=1)
    for replay_id in replay_ids:
        tracker.log_text(replay_id, EXPLANATIONS, text)
        tracker.set_tags(replay_id, {EXPLANATION_TAG: found[0].title[:5000] if found
                                     else "none found in the host, image, environment or "
                                          "command"})
    return found
