"""Pure: the replay against the original — per metric with tolerances, per param, over
the whole run tree (child runs matched as :mod:`envlock.model.runtree` documents), and, when
asked, every artifact by sha256."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envlock.model.runtree import RunNode


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


@dataclass(frozen=True)
class MetricRow:
    name: str
    original: float | None
    replay: float | None
    ok: bool
    tolerance: Tolerance | None = None  # set when this metric has its own tolerance

    @property
    def delta(self) -> float | None:
        if self.original is None or self.replay is None:
            return None
        return self.replay - self.original

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "original": self.original, "replay": self.replay,
                               "delta": self.delta, "ok": self.ok}
        if self.tolerance is not None:
            out["tolerance"] = {"absolute": self.tolerance.absolute,
                                "relative": self.tolerance.relative}
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

    @property
    def ok(self) -> bool:
        return bool(self.original_id and self.replay_id) and all(
            r.ok for r in self.metrics) and all(r.ok for r in self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "name": self.name, "original_run_id": self.original_id,
                "replay_run_id": self.replay_id, "matched_by": self.rule, "ok": self.ok,
                "metrics": [r.to_dict() for r in self.metrics],
                "params": [r.to_dict() for r in self.params if not r.ok]}


@dataclass(frozen=True)
class ArtifactRow:
    run: str  # "" for the root run, else the child run's name
    path: str
    original: str | None  # sha256
    replay: str | None

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
                "original_sha256": self.original, "replay_sha256": self.replay}


@dataclass(frozen=True)
class Comparison:
    rows: tuple[MetricRow, ...]  # the root run's metrics
    tolerance: Tolerance
    params: tuple[ParamRow, ...] = ()  # the root run's params
    runs: tuple[RunRow, ...] = ()  # every run below the root
    artifacts: tuple[ArtifactRow, ...] | None = None  # None: not compared
    relay_missing: tuple[str, ...] = ()  # what the relay could not carry

    @property
    def reproduced(self) -> bool:
        compared = self.rows or any(r.metrics for r in self.runs)
        return bool(compared) and not self.relay_missing and all(
            r.ok for r in self.rows) and all(r.ok for r in self.params) and all(
            r.ok for r in self.runs) and all(r.ok for r in self.artifacts or ())

    @property
    def verdict(self) -> str:
        """The verdict tag's text: why a replay did not reproduce, when it did not."""
        if self.relay_missing:
            return f"not reproduced (relay incomplete: {'; '.join(self.relay_missing)})"
        return "reproduced" if self.reproduced else "not reproduced"

    def to_dict(self) -> dict[str, Any]:
        return {"reproduced": self.reproduced,
                "tolerance": {"absolute": self.tolerance.absolute,
                              "relative": self.tolerance.relative},
                "metrics": [r.to_dict() for r in self.rows],
                "params": [r.to_dict() for r in self.params],
                "runs": [r.to_dict() for r in self.runs],
                "artifacts": None if self.artifacts is None
                else [a.to_dict() for a in self.artifacts],
                "relay_missing": list(self.relay_missing)}


def compare(original: Mapping[str, float], replay: Mapping[str, float],
            tolerance: Tolerance = Tolerance(), metrics: Iterable[str] = (),
            per_metric: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Every metric of the original (or just ``metrics``) must be in the replay, within
    its tolerance: ``per_metric[name]`` when given, else ``tolerance`` (``math.isclose``
    semantics; NaN equals NaN)."""
    names = list(metrics) or sorted(original)
    return Comparison(rows=_metric_rows(original, replay, names, tolerance, per_metric),
                      tolerance=tolerance)


def compare_params(original: Mapping[str, str], replay: Mapping[str, str]
                   ) -> tuple[ParamRow, ...]:
    """Every param of either run; a changed, missing or extra one is a finding."""
    return tuple(ParamRow(k, original.get(k), replay.get(k))
                 for k in sorted(set(original) | set(replay)))


def compare_tree(original: RunNode, replay: RunNode, tolerance: Tolerance = Tolerance(),
                 metrics: Iterable[str] = (), per_metric: Mapping[str, Tolerance] | None = None,
                 relay_missing: Iterable[str] = ()) -> Comparison:
    """The root as :func:`compare` does it, plus its params, plus every other run of the
    tree matched (envlock.model.runtree) and compared the same way. ``metrics`` restricts
    every run to those of its metrics."""
    from envlock.model.runtree import match_trees

    wanted = list(metrics)
    # A named metric is required at the root unless it belongs to other runs of the tree
    # (a search's children log mean_test_score, its parent best_cv_score).
    elsewhere = {k for _d, n in original.walk() if n is not original for k in n.metrics}
    at_root = [n for n in wanted if n in original.metrics or n not in elsewhere]
    root = compare(original.metrics, replay.metrics, tolerance, at_root, per_metric) \
        if at_root or not wanted else compare({}, {}, tolerance, [], per_metric)
    runs = []
    for depth, match in match_trees(original, replay)[1:]:
        a, b = match.original, match.replay
        node = a or b
        assert node is not None
        rows: tuple[MetricRow, ...] = ()
        params: tuple[ParamRow, ...] = ()
        if a is not None and b is not None:
            names = [n for n in wanted if n in a.metrics] if wanted else sorted(a.metrics)
            rows = _metric_rows(a.metrics, b.metrics, names, tolerance, per_metric)
            params = compare_params(a.params, b.params)
        runs.append(RunRow(depth, node.name, a.run_id if a else None,
                           b.run_id if b else None, match.rule, rows, params))
    return Comparison(rows=root.rows, tolerance=tolerance,
                      params=compare_params(original.params, replay.params), runs=tuple(runs),
                      relay_missing=tuple(relay_missing))


def compare_artifacts(pairs: Iterable[tuple[str, Mapping[str, str], Mapping[str, str]]]
                      ) -> tuple[ArtifactRow, ...]:
    """(run label, original path->sha256, replay path->sha256) for every matched run."""
    return tuple(ArtifactRow(label, path, a.get(path), b.get(path))
                 for label, a, b in pairs for path in sorted(set(a) | set(b)))


def _metric_rows(original: Mapping[str, float], replay: Mapping[str, float],
                 names: Iterable[str], tolerance: Tolerance,
                 per_metric: Mapping[str, Tolerance] | None) -> tuple[MetricRow, ...]:
    rows = []
    for name in names:
        own = (per_metric or {}).get(name)
        tol = own or tolerance
        a, b = original.get(name), replay.get(name)
        if a is None or b is None:
            rows.append(MetricRow(name, a, b, False, own))
            continue
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=tol.relative, abs_tol=tol.absolute)
        rows.append(MetricRow(name, a, b, same, own))
    return tuple(rows)
