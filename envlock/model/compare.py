"""Pure: the replay against the original — per metric (its whole history, step by step)
with tolerances, per param, over the whole run tree (child runs matched as
:mod:`envlock.model.runtree` documents, with their names and statuses), and, when asked,
every artifact by sha256. A :class:`MetricPolicy` says which metrics gate the verdict.

Which metrics gate the verdict (the first rule that applies wins):
  1. ``--strict``: every metric gates.
  2. a name matching a ``gated_metrics`` pattern (config): gates.
  3. a metric named with ``--metric``, or given its own tolerance (``tolerances``): gates.
  4. a name matching an ``ungated_metrics`` pattern (config): shown, not gated.
  5. a name matching a built-in rule (:data:`UNGATED_RULES`: metrics that measure time,
     throughput or the machine): shown, not gated.
  6. every other metric gates.
Patterns are shell globs (``*``, ``?``, ``[…]``) matched against the whole metric name,
ignoring case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envlock.model.runtree import RunNode

#: A metric's history: (step, value) in the order it was logged.
History = Sequence[tuple[int, float]]

#: Built-in rules for metrics that measure time, throughput or the machine: shown, not
#: gated (``--strict`` gates them). (pattern, what such a metric measures)
UNGATED_RULES: tuple[tuple[str, str], ...] = (
    ("*_time", "wall-clock time"),  # scikit-learn mean_fit_time, std_score_time, ...
    ("*_runtime", "wall-clock time"),  # Hugging Face train_runtime, eval_runtime
    ("*_seconds", "wall-clock time"),
    ("*duration*", "wall-clock time"),
    ("*elapsed*", "wall-clock time"),
    ("*latency*", "wall-clock time"),
    ("*_per_second", "throughput"),  # Hugging Face train_samples_per_second, ...
    ("*_per_sec", "throughput"),
    ("*throughput*", "throughput"),
    ("system/*", "the machine (MLflow system metrics)"),
    ("*memory*", "the machine"),
    ("*_mem_*", "the machine"),  # Hugging Face train_mem_cpu_alloc_delta, ...
    ("*utilization*", "the machine"),
)


@dataclass(frozen=True)
class Tolerance:
    absolute: float = 0.0
    relative: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Tolerance:
        """``1e-6`` (absolute), ``1%`` or ``rel=0.01``, or ``abs=1e-6,rel=1e-3``."""
        if not text:
            return cls()
        absolute = relative = 0.0
        for part in text.split(","):
            part = part.strip()
            try:
                if part.startswith("rel="):
                    relative = float(part[4:])
                elif part.startswith("abs="):
                    absolute = float(part[4:])
                elif part.endswith("%"):
                    relative = float(part[:-1]) / 100
                else:
                    absolute = float(part)
            except ValueError:
                from envlock.errors import UsageError

                raise UsageError(f"--tolerance {text!r} is not understood",
                                 "use e.g. 1e-6, 0.5%, or abs=1e-6,rel=1e-3") from None
        return cls(absolute, relative)

    def to_dict(self) -> dict[str, float]:
        return {"absolute": self.absolute, "relative": self.relative}


def _matches(name: str, pattern: str) -> bool:
    return fnmatchcase(name.lower(), pattern.lower())


@dataclass(frozen=True)
class MetricPolicy:
    """How metrics are compared: the tolerances, which metrics (``--metric``), and which
    of them gate the verdict (see the module's rules)."""

    tolerance: Tolerance = Tolerance()
    per_metric: Mapping[str, Tolerance] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()  # --metric: compare only these
    ungated: tuple[str, ...] = ()  # ungated_metrics: extra patterns shown, not gated
    gated: tuple[str, ...] = ()  # gated_metrics: patterns that always gate
    strict: bool = False  # --strict: every metric gates

    def tolerance_for(self, name: str) -> Tolerance:
        return self.per_metric.get(name) or self.tolerance

    def ungated_by(self, name: str) -> str | None:
        """The rule that keeps ``name`` out of the verdict; None: it gates."""
        if self.strict or name in self.metrics or name in self.per_metric or any(
                _matches(name, p) for p in self.gated):
            return None
        for pattern in self.ungated:
            if _matches(name, pattern):
                return f"{pattern} (ungated_metrics)"
        for pattern, what in UNGATED_RULES:
            if _matches(name, pattern):
                return f"{pattern}: {what}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"strict": self.strict, "metrics": list(self.metrics),
                "gated_metrics": list(self.gated), "ungated_metrics": list(self.ungated),
                "builtin_ungated": [p for p, _what in UNGATED_RULES],
                "per_metric": {k: v.to_dict() for k, v in sorted(self.per_metric.items())}}


@dataclass(frozen=True)
class Divergence:
    """The first step where two histories of a metric part: a value beyond tolerance, or
    a value on one side only (``index``: which value of a step logged more than once)."""

    step: int
    original: float | None
    replay: float | None
    index: int = 0

    @property
    def delta(self) -> float | None:
        return _delta(self.original, self.replay)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "index": self.index, "original": self.original,
                "replay": self.replay, "delta": self.delta}


def first_divergence(original: History, replay: History,
                     tolerance: Tolerance) -> Divergence | None:
    """Compare two histories step by step (each step's values in logging order)."""
    a, b = _by_step(original), _by_step(replay)
    for step in sorted(a.keys() | b.keys()):
        xs, ys = a.get(step, []), b.get(step, [])
        for i in range(max(len(xs), len(ys))):
            x = xs[i] if i < len(xs) else None
            y = ys[i] if i < len(ys) else None
            if x is None or y is None or not _close(x, y, tolerance):
                return Divergence(step, x, y, i)
    return None


def _delta(original: float | None, replay: float | None) -> float | None:
    return None if original is None or replay is None else replay - original


def _by_step(history: History) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for step, value in history:
        out.setdefault(step, []).append(value)
    return out


def _close(a: float, b: float, tolerance: Tolerance) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(
        a, b, rel_tol=tolerance.relative, abs_tol=tolerance.absolute)


@dataclass(frozen=True)
class MetricRow:
    name: str
    original: float | None  # the last value
    replay: float | None
    ok: bool  # the values (and the histories, when compared) agree within tolerance
    tolerance: Tolerance | None = None  # set when this metric has its own tolerance
    ungated: str | None = None  # the rule that keeps it out of the verdict
    points: tuple[int, int] | None = None  # history lengths (None: not compared)
    divergence: Divergence | None = None  # the first step the histories part

    @property
    def gated(self) -> bool:
        return self.ungated is None

    @property
    def passes(self) -> bool:
        """What the verdict sees: agrees, or is not gated."""
        return self.ok or not self.gated

    @property
    def delta(self) -> float | None:
        return _delta(self.original, self.replay)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "original": self.original, "replay": self.replay,
                               "delta": self.delta, "ok": self.ok, "gated": self.gated}
        if self.ungated is not None:
            out["ungated_by"] = self.ungated
        if self.tolerance is not None:
            out["tolerance"] = self.tolerance.to_dict()
        if self.points is not None:
            out["history"] = {"points": list(self.points), "first_divergence":
                              self.divergence.to_dict() if self.divergence else None}
        return out


@dataclass(frozen=True)
class ParamRow:
    name: str
    original: str | None
    replay: str | None

    @property
    def ok(self) -> bool:
        return self.original == self.replay

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "original": self.original, "replay": self.replay,
                "ok": self.ok}


#: The names MLflow makes up for runs started without one ("bold-fox-123"): a search's
#: candidates get new ones on every run, so two such names are not a difference.
_GENERATED_NAME = re.compile(r"^[a-z]+-[a-z]+-\d+$")


def same_name(original: str, replay: str) -> bool:
    return original == replay or bool(_GENERATED_NAME.match(original)
                                      and _GENERATED_NAME.match(replay))


@dataclass(frozen=True)
class RunRow:
    """One run below the root of the tree: its match and what differs."""

    depth: int
    name: str
    original_id: str | None
    replay_id: str | None
    rule: str  # how it was matched (envlock.model.runtree), or "missing" / "extra"
    metrics: tuple[MetricRow, ...] = ()
    params: tuple[ParamRow, ...] = ()
    replay_name: str | None = None  # of a matched run
    status: tuple[str, str] | None = None  # (original, replay) of a matched run

    @property
    def matched(self) -> bool:
        return bool(self.original_id and self.replay_id)

    @property
    def name_ok(self) -> bool:
        return self.replay_name is None or same_name(self.name, self.replay_name)

    @property
    def status_ok(self) -> bool:
        return self.status is None or self.status[0] == self.status[1]

    @property
    def ok(self) -> bool:
        return self.matched and self.name_ok and self.status_ok and all(
            r.passes for r in self.metrics) and all(r.ok for r in self.params)

    def problems(self) -> list[str]:
        """What makes this run not reproduced, one short phrase each."""
        if not self.matched:
            return [f"{self.rule} in the replay"]
        out = [] if self.status_ok else [f"status {self.status[0]} -> {self.status[1]}"
                                         if self.status else "status"]
        if not self.name_ok:
            out.append(f"name {self.name!r} -> {self.replay_name!r}")
        out += [f"metric {m.name} differs" for m in self.metrics if not m.passes]
        out += [f"param {p.name} {p.original!r} -> {p.replay!r}" for p in self.params
                if not p.ok]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "name": self.name, "replay_name": self.replay_name,
                "original_run_id": self.original_id, "replay_run_id": self.replay_id,
                "matched_by": self.rule, "ok": self.ok,
                "status": {"original": self.status[0], "replay": self.status[1]}
                if self.status else None,
                "problems": self.problems(),
                "metrics": [r.to_dict() for r in self.metrics],
                "params": [r.to_dict() for r in self.params if not r.ok]}


@dataclass(frozen=True)
class ArtifactRow:
    run: str  # "" for the root run, else the child run's name
    path: str
    original: str | None  # sha256
    replay: str | None
    reason: str | None = None  # of one that differs: why (envlock.model.artifactdiff)

    @property
    def status(self) -> str:
        if self.original is None:
            return "extra"
        if self.replay is None:
            return "missing"
        return "identical" if self.original == self.replay else "differs"

    @property
    def ok(self) -> bool:
        return self.status == "identical"

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "path": self.path, "status": self.status,
                "original_sha256": self.original, "replay_sha256": self.replay,
                "reason": self.reason}


@dataclass(frozen=True)
class UngatedMetric:
    """A metric shown but not gated, over every run of the tree that has it."""

    name: str
    rule: str
    runs: int  # runs in which it was compared
    differ: int  # of which it differs in

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ungated_by": self.rule, "runs": self.runs,
                "differ": self.differ}


@dataclass(frozen=True)
class Comparison:
    rows: tuple[MetricRow, ...]  # the root run's metrics
    policy: MetricPolicy = MetricPolicy()
    params: tuple[ParamRow, ...] = ()  # the root run's params
    runs: tuple[RunRow, ...] = ()  # every run below the root
    artifacts: tuple[ArtifactRow, ...] | None = None  # None: not compared
    relay_missing: tuple[str, ...] = ()  # what the relay could not carry
    children: tuple[int, int] = (0, 0)  # runs below the root: original, replay

    @property
    def tolerance(self) -> Tolerance:
        return self.policy.tolerance

    def all_metrics(self) -> Iterable[MetricRow]:
        yield from self.rows
        for run in self.runs:
            yield from run.metrics

    @property
    def reproduced(self) -> bool:
        compared = any(r.gated for r in self.all_metrics())
        return compared and not self.relay_missing and all(
            r.passes for r in self.rows) and all(r.ok for r in self.params) and all(
            r.ok for r in self.runs) and all(r.ok for r in self.artifacts or ())

    @property
    def verdict(self) -> str:
        """The verdict tag's text: why a replay did not reproduce, when it did not."""
        if self.relay_missing:
            return f"not reproduced (relay incomplete: {'; '.join(self.relay_missing)})"
        return "reproduced" if self.reproduced else "not reproduced"

    def differing(self) -> dict[str, int]:
        """Gated metrics that differ: name -> in how many runs of the tree."""
        out: dict[str, int] = {}
        for row in self.all_metrics():
            if not row.passes:
                out[row.name] = out.get(row.name, 0) + 1
        return dict(sorted(out.items()))

    def ungated(self) -> list[UngatedMetric]:
        """The metrics shown but not gated, each over every run that has it."""
        seen: dict[str, list[MetricRow]] = {}
        for row in self.all_metrics():
            if not row.gated:
                seen.setdefault(row.name, []).append(row)
        return [UngatedMetric(name, rows[0].ungated or "", len(rows),
                              sum(1 for r in rows if not r.ok))
                for name, rows in sorted(seen.items())]

    def divergences(self) -> list[tuple[str, MetricRow, Divergence]]:
        """(run label, row, where) of every gated metric whose history parts from the
        original's (the root is labelled ""), in the tree's order."""
        labelled = [("", r) for r in self.rows]
        labelled += [(run.name, r) for run in self.runs for r in run.metrics]
        return [(label, r, r.divergence) for label, r in labelled
                if r.divergence is not None and r.gated]

    def to_dict(self) -> dict[str, Any]:
        return {"reproduced": self.reproduced,
                "tolerance": self.tolerance.to_dict(),
                "policy": self.policy.to_dict(),
                "metrics": [r.to_dict() for r in self.rows],
                "params": [r.to_dict() for r in self.params],
                "child_runs": {"original": self.children[0], "replay": self.children[1]},
                "runs": [r.to_dict() for r in self.runs],
                "differing": self.differing(),
                "ungated": [u.to_dict() for u in self.ungated()],
                "artifacts": None if self.artifacts is None
                else [a.to_dict() for a in self.artifacts],
                "relay_missing": list(self.relay_missing)}


def compare(original: Mapping[str, float], replay: Mapping[str, float],
            policy: MetricPolicy = MetricPolicy()) -> Comparison:
    """Every metric of the original (or just the policy's ``metrics``) must be in the
    replay, within its tolerance (``math.isclose`` semantics; NaN equals NaN); metrics
    the policy does not gate are compared and shown, but do not decide the verdict."""
    names = list(policy.metrics) or sorted(original)
    return Comparison(rows=_metric_rows(original, replay, names, policy), policy=policy)


def compare_params(original: Mapping[str, str], replay: Mapping[str, str]
                   ) -> tuple[ParamRow, ...]:
    """Every param of either run; a changed, missing or extra one is a finding."""
    return tuple(ParamRow(k, original.get(k), replay.get(k))
                 for k in sorted(set(original) | set(replay)))


def compare_tree(original: RunNode, replay: RunNode, policy: MetricPolicy = MetricPolicy(),
                 relay_missing: Iterable[str] = ()) -> Comparison:
    """The root as :func:`compare` does it (histories too, where the nodes carry them),
    plus its params, plus every other run of the tree matched (envlock.model.runtree) and
    compared the same way, with its name and status. The policy's ``metrics`` restrict
    every run to those of its metrics."""
    from envlock.model.runtree import match_trees

    wanted = list(policy.metrics)
    # A named metric is required at the root unless it belongs to other runs of the tree
    # (a search's children log mean_test_score, its parent best_cv_score).
    elsewhere = {k for _d, n in original.walk() if n is not original for k in n.metrics}
    at_root = [n for n in wanted if n in original.metrics or n not in elsewhere]
    root_names = at_root if wanted else sorted(original.metrics)
    runs = [_run_row(depth, match.original, match.replay, match.rule, policy)
            for depth, match in match_trees(original, replay)[1:]]
    return Comparison(rows=_metric_rows(original.metrics, replay.metrics, root_names, policy,
                                        (original.histories, replay.histories)),
                      policy=policy, params=compare_params(original.params, replay.params),
                      runs=tuple(runs), relay_missing=tuple(relay_missing),
                      children=(original.size() - 1, replay.size() - 1))


def _run_row(depth: int, a: RunNode | None, b: RunNode | None, rule: str,
             policy: MetricPolicy) -> RunRow:
    node = a or b
    assert node is not None
    if a is None or b is None:
        return RunRow(depth, node.name, a.run_id if a else None, b.run_id if b else None, rule)
    names = [n for n in policy.metrics if n in a.metrics] if policy.metrics \
        else sorted(a.metrics)
    rows = _metric_rows(a.metrics, b.metrics, names, policy, (a.histories, b.histories))
    return RunRow(depth, a.name, a.run_id, b.run_id, rule, rows,
                  compare_params(a.params, b.params), replay_name=b.name,
                  status=(a.status, b.status))


def compare_artifacts(pairs: Iterable[tuple[str, Mapping[str, str], Mapping[str, str]]]
                      ) -> tuple[ArtifactRow, ...]:
    """(run label, original path->sha256, replay path->sha256) for every matched run."""
    return tuple(ArtifactRow(label, path, a.get(path), b.get(path))
                 for label, a, b in pairs for path in sorted(set(a) | set(b)))


def _metric_rows(original: Mapping[str, float], replay: Mapping[str, float],
                 names: Iterable[str], policy: MetricPolicy,
                 histories: tuple[Mapping[str, History], Mapping[str, History]] = ({}, {})
                 ) -> tuple[MetricRow, ...]:
    return tuple(_metric_row(name, original.get(name), replay.get(name), policy,
                             (histories[0].get(name), histories[1].get(name)))
                 for name in names)


def _metric_row(name: str, a: float | None, b: float | None, policy: MetricPolicy,
                histories: tuple[History | None, History | None]) -> MetricRow:
    own, tol = policy.per_metric.get(name), policy.tolerance_for(name)
    ungated = policy.ungated_by(name)
    if a is None or b is None:
        return MetricRow(name, a, b, False, own, ungated)
    same = _close(a, b, tol)
    first, second = histories
    if first is None or second is None:  # no histories: the last values alone
        return MetricRow(name, a, b, same, own, ungated)
    divergence = first_divergence(first, second, tol)
    return MetricRow(name, a, b, same and divergence is None, own, ungated,
                     (len(first), len(second)), divergence)
