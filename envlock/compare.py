"""Pure: the replay's metrics against the original's, per metric, with tolerances."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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
class Comparison:
    rows: tuple[MetricRow, ...]
    tolerance: Tolerance

    @property
    def reproduced(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"reproduced": self.reproduced,
                "tolerance": {"absolute": self.tolerance.absolute,
                              "relative": self.tolerance.relative},
                "metrics": [r.to_dict() for r in self.rows]}


def compare(original: Mapping[str, float], replay: Mapping[str, float],
            tolerance: Tolerance = Tolerance(), metrics: Iterable[str] = (),
            per_metric: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Every metric of the original (or just ``metrics``) must be in the replay, within
    its tolerance: ``per_metric[name]`` when given, else ``tolerance`` (``math.isclose``
    semantics; NaN equals NaN)."""
    names = list(metrics) or sorted(original)
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
    return Comparison(rows=tuple(rows), tolerance=tolerance)
