"""Pure: the tree of MLflow runs an experiment makes (a parent and its child runs, as
hyperparameter searches log them), what a relay carried of it, and how the runs of a
replay are matched with the original's.

Matching rule (for the children of each matched parent, applied in this order):
  1. same run name and same params;
  2. same params (autologged search candidates get random names but distinct params);
  3. same run name;
  4. what is left, by start time.
A child of the original left unmatched is *missing* from the replay; a child of the
replay left unmatched is *extra*. Either makes the replay not reproduced, as does a
matched child whose status (FINISHED / FAILED / KILLED) differs, or whose name differs
(unless both are names MLflow made up, as a search's candidates get).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: MLflow's tag that makes a run the child of another.
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class RunNode:
    run_id: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    start_time: int = 0
    children: tuple[RunNode, ...] = ()
    status: str = ""  # FINISHED / FAILED / KILLED / RUNNING ("" : not known)
    #: each metric's whole history, (step, value) in logging order ({}: not read)
    histories: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, RunNode]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)

    def size(self) -> int:
        return sum(1 for _ in self.walk())


def build_tree(root: RunNode, parents: dict[str, str], nodes: dict[str, RunNode]) -> RunNode:
    """``root`` with its descendants: ``parents`` maps a run id to its parent's id."""
    kids: dict[str, list[RunNode]] = {}
    for run_id, parent in parents.items():
        if run_id in nodes:
            kids.setdefault(parent, []).append(nodes[run_id])

    def grow(node: RunNode, seen: frozenset[str]) -> RunNode:
        own = sorted(kids.get(node.run_id, []), key=lambda n: (n.start_time, n.run_id))
        children = tuple(grow(k, seen | {k.run_id}) for k in own if k.run_id not in seen)
        return replace(node, children=children)

    return grow(root, frozenset({root.run_id}))


@dataclass(frozen=True)
class Match:
    original: RunNode | None
    replay: RunNode | None
    rule: str  # "name+params" | "params" | "name" | "order" | "missing" | "extra"


def _params_key(node: RunNode) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(node.params.items()))


def match_children(originals: Sequence[RunNode], replays: Sequence[RunNode]) -> list[Match]:
    """Pair the children of one matched parent (see the module's rule)."""
    left = sorted(originals, key=lambda n: (n.start_time, n.run_id))
    right = sorted(replays, key=lambda n: (n.start_time, n.run_id))
    matches: list[Match] = []
    rules = (("name+params", lambda n: (n.name, _params_key(n))),
             ("params", _params_key), ("name", lambda n: n.name))
    for rule, key in rules:
        for original in list(left):
            if rule == "params" and not original.params:
                continue
            found = next((r for r in right if key(r) == key(original)), None)
            if found is not None:
                matches.append(Match(original, found, rule))
                left.remove(original)
                right.remove(found)
    matches += [Match(o, r, "order") for o, r in zip(left, right, strict=False)]
    matches += [Match(o, None, "missing") for o in left[len(right):]]
    matches += [Match(None, r, "extra") for r in right[len(left):]]
    return matches


def match_trees(original: RunNode, replay: RunNode) -> list[tuple[int, Match]]:
    """Every run of both trees paired (depth-first, the roots first)."""
    out: list[tuple[int, Match]] = [(0, Match(original, replay, "root"))]

    def descend(a: RunNode, b: RunNode, depth: int) -> None:
        for match in match_children(a.children, b.children):
            out.append((depth, match))
            if match.original is not None and match.replay is not None:
                descend(match.original, match.replay, depth + 1)
            else:  # the unmatched side's descendants are unmatched too
                lone = match.original or match.replay
                assert lone is not None
                for d, node in list(lone.walk(depth))[1:]:
                    out.append((d, Match(node, None, "missing") if match.original
                                else Match(None, node, "extra")))

    descend(original, replay, 1)
    return out


@dataclass
class RelayReport:
    """What the relay carried from the replay container's store into the real one."""

    runs: int = 0
    params: int = 0
    metric_points: int = 0
    tags: int = 0
    datasets: int = 0
    models: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    #: container run id -> (host run id, run name)
    mapping: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: what could not be carried, one line each; any makes the replay not reproduced
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        size = f"{self.artifact_bytes / 1e6:.1f} MB"
        return (f"relayed {self.runs} run(s), {self.params} params, {self.metric_points} "
                f"metric points, {self.tags} tags, {self.datasets} dataset input(s), "
                f"{self.models} model(s), {self.artifacts} artifact file(s) ({size})")

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "params": self.params, "metric_points": self.metric_points,
                "tags": self.tags, "datasets": self.datasets, "models": self.models,
                "artifacts": self.artifacts, "artifact_bytes": self.artifact_bytes,
                "complete": self.complete, "missing": list(self.missing),
                "mapping": {k: {"run_id": v[0], "name": v[1]} for k, v in self.mapping.items()}}
