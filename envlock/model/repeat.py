"""Pure: noise versus drift, from N replays of one run (``--repeat N``).

Each replay is compared with the original as a single replay is
(:mod:`envlock.model.compare`); with several, every metric of every matched run is also
compared across the replays themselves, and classified:

* ``equal``: the replays agree with each other and with the original (within the
  metric's tolerance, last value and history);
* ``drift``: the replays agree with each other but not with the original — the same
  difference every time: something changed (inputs, code, environment), not noise;
* ``noise``: the replays differ among themselves (within the metric's tolerance, last
  value or history). Its *spread* is reported (min, max, mean, standard deviation), and
  whether the original's last value lies within it: inside the replays' [min, max]
  widened by the tolerance, or inside their 99% prediction interval for one more draw
  (Student's t with N-1 degrees of freedom: mean ± t·s·√(1+1/N)); with fewer than two
  replays nothing can be said and it does not pass. Where the original's history first
  leaves the replays' per-step [min, max] is shown, not gated;
* ``missing``: the original or a replay lacks it.

The run as a whole is ``drift`` when a gated metric drifts (or an artifact differs from
the original identically in every replay), else ``nondeterministic`` when a gated metric
is noise (or an artifact differs among the replays), else ``deterministic``. It passes
when every gated metric is equal or noise with the original within its spread, and each
replay is otherwise reproduced: params, child runs (matched, names, statuses), the
relay. Metrics the policy does not gate (time, throughput, the machine) are classified
and shown, never gated; so are artifacts that differ among the replays (a checkpoint of
an unseeded training), whose original cannot be placed in a spread of hashes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envlock.model.compare import (
    Comparison,
    History,
    MetricPolicy,
    MetricRow,
    Tolerance,
    _close,
    first_divergence,
)
from envlock.model.runtree import RunNode

DETERMINISTIC, NONDETERMINISTIC, DRIFT = "deterministic", "nondeterministic", "drift"
EQUAL, NOISE, DRIFTS, MISSING = "equal", "noise", "drift", "missing"

#: Student's t at 0.995 (a two-sided 99% interval) by degrees of freedom; beyond: normal.
_T995 = (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106,
         3.055, 3.012, 2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807,
         2.797, 2.787, 2.779, 2.771, 2.763, 2.756, 2.750)


def t_quantile(dof: int) -> float:
    """Student's t at 0.995 with ``dof`` degrees of freedom (≥ 1)."""
    return _T995[dof - 1] if dof <= len(_T995) else 2.576


@dataclass(frozen=True)
class Envelope:
    """The first step where the original's history leaves the replays' [min, max]."""

    step: int
    original: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "original": self.original, "low": self.low,
                "high": self.high}


@dataclass(frozen=True)
class Spread:
    """One metric of one run over the original and N replays."""

    run: str  # "" the root, else the child run's name
    name: str
    original: float | None  # last values
    values: tuple[float | None, ...]  # one per replay
    kind: str  # EQUAL | NOISE | DRIFTS | MISSING
    ungated: str | None = None  # the policy's rule that keeps it out of the verdict
    tolerance: Tolerance = Tolerance()
    leaves: Envelope | None = None  # noise: where the original's history leaves the band

    @property
    def gated(self) -> bool:
        return self.ungated is None

    @property
    def known(self) -> list[float]:
        return [v for v in self.values if v is not None and not math.isnan(v)]

    @property
    def low(self) -> float | None:
        return min(self.known, default=None)

    @property
    def high(self) -> float | None:
        return max(self.known, default=None)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.known) if self.known else None

    @property
    def stdev(self) -> float | None:
        return statistics.stdev(self.known) if len(self.known) > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 99% prediction interval of one more replay (None: under two replays)."""
        known = self.known
        if len(known) < 2 or self.mean is None or self.stdev is None:
            return None
        half = t_quantile(len(known) - 1) * self.stdev * math.sqrt(1 + 1 / len(known))
        return self.mean - half, self.mean + half

    @property
    def within(self) -> bool | None:
        """Noise: whether the original lies within the replays' spread (else None)."""
        if self.kind != NOISE:
            return None
        x, low, high = self.original, self.low, self.high
        if x is None or low is None or high is None or len(self.known) < 2:
            return False
        slack = max(self.tolerance.absolute,
                    self.tolerance.relative * max(abs(low), abs(high)))
        interval = self.interval or (low, high)
        return low - slack <= x <= high + slack or interval[0] <= x <= interval[1]

    @property
    def ok(self) -> bool:
        return self.kind == EQUAL or bool(self.within)

    @property
    def passes(self) -> bool:
        return self.ok or not self.gated

    def describe(self) -> str:
        """One line: what this metric did over the replays."""
        where = f"{self.name}" + (f" (child {self.run})" if self.run else "")
        if self.kind == EQUAL:
            return f"{where}: equal in all {len(self.values)} replays"
        if self.kind == MISSING:
            return f"{where}: missing in the original or a replay"
        if self.kind == DRIFTS:
            return (f"{where}: drift: every replay gives {self.values[0]!r}, the original "
                    f"{self.original!r}")
        inside = "within" if self.within else "OUTSIDE"
        sd = f"{self.stdev:.3g}" if self.stdev is not None else "-"
        text = (f"{where}: noise: replays {self.low!r}..{self.high!r} (sd {sd}); "
                f"the original {self.original!r} lies {inside} the spread")
        if self.leaves:
            text += (f"; its history leaves the replays' band at step {self.leaves.step}")
        return text

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {"run": self.run, "name": self.name, "kind": self.kind,
                "gated": self.gated, "ungated_by": self.ungated, "ok": self.ok,
                "original": self.original, "replays": list(self.values),
                "min": self.low, "max": self.high, "mean": self.mean, "stdev": self.stdev,
                "interval99": list(interval) if interval else None, "within": self.within,
                "history_leaves_band": self.leaves.to_dict() if self.leaves else None}


def spread(run: str, name: str, original: tuple[float | None, History | None],
           replays: Sequence[tuple[MetricRow, History | None]], policy: MetricPolicy
           ) -> Spread:
    """Classify one metric: ``original`` (last value, history); per replay its compared
    row (against the original) and its history."""
    tol = policy.tolerance_for(name)
    values = tuple(row.replay for row, _h in replays)
    ungated = replays[0][0].ungated if replays else policy.ungated_by(name)
    base = Spread(run, name, original[0], values, MISSING, ungated, tol)
    if original[0] is None or not values or any(v is None for v in values):
        return base
    first, histories = values[0], [h for _row, h in replays]
    assert first is not None
    varies = any(not _close(first, v, tol) for v in values if v is not None) or any(
        h is not None and histories[0] is not None
        and first_divergence(histories[0], h, tol) is not None for h in histories[1:])
    if not varies:
        kind = EQUAL if all(row.ok for row, _h in replays) else DRIFTS
        return Spread(run, name, original[0], values, kind, ungated, tol)
    return Spread(run, name, original[0], values, NOISE, ungated, tol,
                  envelope(original[1], histories, tol))


def envelope(original: History | None, replays: Sequence[History | None],
             tolerance: Tolerance) -> Envelope | None:
    """The first step where ``original`` leaves the replays' per-step [min, max] (the
    n-th value logged at a step against the n-th of each replay), widened by the
    tolerance; None when it never does or a history is not known."""
    if original is None or any(h is None for h in replays):
        return None
    bands: dict[tuple[int, int], list[float]] = {}
    for history in replays:
        assert history is not None
        for key, value in _indexed(history):
            bands.setdefault(key, []).append(value)
    for key, value in _indexed(original):
        band = [v for v in bands.get(key, []) if not math.isnan(v)]
        if len(band) < len(replays) or math.isnan(value):
            continue
        low, high = min(band), max(band)
        slack = max(tolerance.absolute, tolerance.relative * max(abs(low), abs(high)))
        if not low - slack <= value <= high + slack:
            return Envelope(key[0], value, low, high)
    return None


def _indexed(history: History) -> list[tuple[tuple[int, int], float]]:
    seen: dict[int, int] = {}
    out = []
    for step, value in history:
        out.append(((step, seen.get(step, 0)), value))
        seen[step] = seen.get(step, 0) + 1
    return out


@dataclass(frozen=True)
class ArtifactSpread:
    """One artifact over the replays: the same as the original in each (``equal``), the
    same in each replay but not the original (``drift``), or differing among the replays
    (``noise``: shown, not gated), or absent somewhere (``missing``)."""

    run: str
    path: str
    original: str | None  # sha256
    replays: tuple[str | None, ...]

    @property
    def kind(self) -> str:
        if self.original is None or any(r is None for r in self.replays):
            return MISSING
        if len(set(self.replays)) > 1:
            return NOISE
        return EQUAL if self.replays[0] == self.original else DRIFTS

    @property
    def ok(self) -> bool:
        return self.kind in (EQUAL, NOISE)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "path": self.path, "kind": self.kind, "ok": self.ok,
                "original_sha256": self.original, "replays_sha256": list(self.replays)}


@dataclass(frozen=True)
class Repeat:
    """N replays of one run, classified (see the module)."""

    spreads: tuple[Spread, ...]
    artifacts: tuple[ArtifactSpread, ...] = ()
    problems: tuple[str, ...] = ()  # what else kept a replay from reproducing
    replays: int = 0

    @property
    def kind(self) -> str:
        gated = [s for s in self.spreads if s.gated]
        if any(s.kind == DRIFTS for s in gated) or any(
                a.kind == DRIFTS for a in self.artifacts):
            return DRIFT
        if any(s.kind == NOISE for s in gated) or any(a.kind == NOISE for a in self.artifacts):
            return NONDETERMINISTIC
        return DETERMINISTIC

    @property
    def passes(self) -> bool:
        return self.replays > 0 and not self.problems and any(
            s.gated for s in self.spreads) and all(s.passes for s in self.spreads) and all(
            a.ok for a in self.artifacts)

    def failing(self) -> list[Spread]:
        return [s for s in self.spreads if not s.passes]

    def noisy(self) -> list[Spread]:
        return [s for s in self.spreads if s.kind == NOISE]

    @property
    def verdict(self) -> str:
        """One line, e.g. ``nondeterministic: the original lies within the spread of 3
        replays (2 metrics vary)``."""
        n = self.replays
        if self.kind == DRIFT:
            names = sorted({s.name for s in self.spreads if s.gated and s.kind == DRIFTS}
                           | {a.path for a in self.artifacts if a.kind == DRIFTS})
            return (f"drift: {n} replays agree with each other but not with the original "
                    f"({', '.join(names)})")
        if self.kind == NONDETERMINISTIC:
            gated = [s for s in self.noisy() if s.gated]
            outside = sorted({s.name for s in gated if not s.within})
            where = (f"the original lies OUTSIDE the spread of {n} replays for "
                     f"{', '.join(outside)}" if outside else
                     f"the original lies within the spread of {n} replays")
            return f"nondeterministic: {where} ({len(gated)} metric(s) vary)"
        return f"deterministic: {n} replays equal to each other" + (
            " and the original" if self.passes else "")

    def to_dict(self) -> dict[str, Any]:
        return {"replays": self.replays, "kind": self.kind, "passes": self.passes,
                "verdict": self.verdict, "problems": list(self.problems),
                "metrics": [s.to_dict() for s in self.spreads],
                "artifacts": [a.to_dict() for a in self.artifacts]}


def classify(original: RunNode, replays: Sequence[tuple[Comparison, RunNode]],
             policy: MetricPolicy) -> Repeat:
    """N replays (each: its comparison with the original, and its run tree) classified.
    Runs are keyed by the original's run they were matched with."""
    rows: dict[tuple[str, str], list[tuple[MetricRow, History | None]]] = {}
    labels: dict[str, str] = {original.run_id: ""}
    problems: list[str] = []
    for number, (comparison, tree) in enumerate(replays, start=1):
        nodes = {node.run_id: node for _d, node in tree.walk()}
        pairs = [(original.run_id, tree.run_id, comparison.rows)] + [
            (r.original_id, r.replay_id, r.metrics) for r in comparison.runs if r.matched]
        for run in comparison.runs:
            labels.setdefault(run.original_id or "", run.name)
            problems += [f"replay {number}: {'child ' + run.name + ': ' if run.name else ''}"
                         f"{p}" for p in run.problems() if not p.startswith("metric ")]
        problems += [f"replay {number}: param {p.name} {p.original!r} -> {p.replay!r}"
                     for p in comparison.params if not p.ok]
        problems += [f"replay {number}: relay incomplete: {m}" for m in comparison.relay_missing]
        for original_id, replay_id, metric_rows in pairs:
            node = nodes.get(str(replay_id))
            for row in metric_rows:
                rows.setdefault((str(original_id), row.name), []).append(
                    (row, node.histories.get(row.name) if node else None))
    originals = {node.run_id: node for _d, node in original.walk()}
    spreads = []
    for (run_id, name), found in rows.items():
        node = originals.get(run_id)
        first = (node.metrics.get(name), node.histories.get(name)) if node else (None, None)
        if len(found) < len(replays):  # a run unmatched in some replay: a problem already
            continue
        spreads.append(spread(labels.get(run_id, run_id), name, first, found, policy))
    return Repeat(tuple(spreads), artifact_spreads(replays), tuple(problems), len(replays))


def artifact_spreads(replays: Sequence[tuple[Comparison, RunNode]]
                     ) -> tuple[ArtifactSpread, ...]:
    """Each artifact's sha256 in the original and in each replay (when compared)."""
    found: dict[tuple[str, str], tuple[str | None, list[str | None]]] = {}
    for comparison, _tree in replays:
        for row in comparison.artifacts or ():
            original, seen = found.setdefault((row.run, row.path), (row.original, []))
            seen.append(row.replay)
    return tuple(ArtifactSpread(run, path, original, tuple(seen) + (None,) * (
        len(replays) - len(seen))) for (run, path), (original, seen) in found.items())


def by_kind(spreads: Sequence[Spread]) -> Mapping[str, int]:
    """How many metrics of each kind."""
    out: dict[str, int] = {}
    for item in spreads:
        out[item.kind] = out.get(item.kind, 0) + 1
    return out
