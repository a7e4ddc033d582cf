"""Pure: one self-contained HTML page about a replay — the verdict, the explanations, the
metrics, history plots of the original against the replay (inline SVG,
:mod:`envlock.model.plots`), the run tree, the artifacts, the spread of ``--repeat`` and
the host differences. No script, no stylesheet or font from anywhere: it opens offline,
in a CI artifact viewer as well as in a browser. The same data gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from envlock.model import runrecord

if TYPE_CHECKING:
    from envlock.model.compare import Comparison
    from envlock.model.diff import Change
    from envlock.model.runtree import RunNode

ARTIFACT = runrecord.REPORT_ARTIFACT  # envlock/report.html on each replay run
MAX_ROOT_PLOTS = 16  # root metrics drawn (the rest are in the table)
MAX_CHILD_PLOTS = 8  # metric names drawn over the child runs

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1180px;color:#1b1f23;padding:0 1em}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.8em;
border-bottom:1px solid #e1e4e8;padding-bottom:.2em}
.verdict{display:inline-block;padding:.25em .7em;border-radius:4px;color:#fff;
font-weight:600}.ok{background:#1a7f37}.bad{background:#cf222e}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #e1e4e8;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{font-variant-numeric:tabular-nums;text-align:right}
tr.differs td{background:#fff5f5}.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0;border:1px solid #e1e4e8;padding:4px}
.plots svg{width:100%;height:auto;max-width:520px}
ol.why li{margin:.4em 0}ol.why ul{color:#57606a;margin:.2em 0}
code{background:#f6f8fa;padding:0 .25em;border-radius:3px}.muted{color:#57606a}
"""


@dataclass(frozen=True)
class ReportData:
    """What the page shows (all optional but the ids and the verdict)."""

    original_run_id: str
    replay_run_id: str | None
    verdict: str
    comparison: Comparison | None = None
    original: RunNode | None = None
    replay: RunNode | None = None
    explanations: Sequence[Mapping[str, Any]] = ()  # model.explanations, as dicts
    host_changes: Sequence[Change] = ()
    repeat: Mapping[str, Any] | None = None  # model.repeat.Repeat.to_dict()
    facts: Mapping[str, Any] = field(default_factory=dict)  # image, exit code, …


def render(data: ReportData) -> str:
    """The page."""
    ok = data.verdict.startswith("reproduced")
    parts = [f"<h1>envlock replay report</h1><p><span class='verdict {'ok' if ok else 'bad'}'>"
             f"{escape(data.verdict.upper())}</span></p>", _facts(data)]
    parts += [_why(data.explanations), _metrics(data.comparison), _plots(data),
              _tree(data.comparison), _artifacts(data.comparison), _repeat(data.repeat),
              _hosts(data.host_changes)]
    title = f"envlock: {data.verdict} — {data.original_run_id}"
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(p for p in parts if p) + "</body></html>\n")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           differs: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = " class='differs'" if i < len(differs) and differs[i] else ""
        cells = "".join(f"<td class='num'>{escape(_fmt(c))}</td>" if isinstance(c, float)
                        else f"<td>{escape(_fmt(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _facts(data: ReportData) -> str:
    facts = {"original run": data.original_run_id, "replay run": data.replay_run_id,
             **data.facts}
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(_fmt(v))}</code>"
                               "</td></tr>" for k, v in facts.items()) + "</table>"


def _why(explanations: Sequence[Mapping[str, Any]]) -> str:
    if not explanations:
        return ""
    items = "".join(f"<li><b>{escape(str(e.get('title')))}</b> <span class='muted'>("
                    f"{escape(str(e.get('kind')))})</span><ul>"
                    + "".join(f"<li>{escape(str(line))}</li>" for line in e.get("evidence", ()))
                    + "</ul></li>" for e in explanations)
    return f"<h2>Why it may differ (most likely first)</h2><ol class='why'>{items}</ol>"


def _metrics(comparison: Comparison | None) -> str:
    if comparison is None:
        return ""
    rows = [(r.name, r.original, r.replay, r.delta,
             "ok" if r.ok else f"differs from step {r.divergence.step}" if r.divergence
             else "differs", "gated" if r.gated else f"not gated ({r.ungated})")
            for r in comparison.rows]
    return "<h2>Metrics of the run</h2>" + _table(
        ("metric", "original", "replay", "delta", "", "verdict"), rows,
        [not r.passes for r in comparison.rows])


def _plots(data: ReportData) -> str:
    if data.original is None or data.replay is None:
        return ""
    from envlock.model import plots

    firsts = {r.name: r.divergence.step for r in (data.comparison.rows if data.comparison
                                                  else ()) if r.divergence}
    figures = []
    for name in sorted(data.original.histories)[:MAX_ROOT_PLOTS]:
        a, b = data.original.histories[name], data.replay.histories.get(name) or []
        if len(a) > 1 or len(b) > 1:
            figures.append(plots.history_svg(name, [a], [b], firsts.get(name)))
    figures += _child_plots(data)
    if not figures:
        return ""
    return ("<h2>Metric histories: original (solid) against replay (dashed)</h2>"
            "<div class='plots'>" + "".join(f"<figure>{f}</figure>" for f in figures)
            + "</div>")


def _child_plots(data: ReportData) -> list[str]:
    """Per metric name over the matched child runs: histories overlaid, or (one value
    each) the original's against the replay's."""
    from envlock.model import plots

    if data.comparison is None or data.original is None or data.replay is None:
        return []
    nodes = {n.run_id: n for tree in (data.original, data.replay) for _d, n in tree.walk()}
    pairs = [(nodes[r.original_id], nodes[r.replay_id]) for r in data.comparison.runs
             if r.matched and r.original_id in nodes and r.replay_id in nodes]
    names = sorted({k for a, _b in pairs for k in a.metrics})[:MAX_CHILD_PLOTS]
    out = []
    for name in names:
        have = [(a, b) for a, b in pairs if name in a.metrics and name in b.metrics]
        if any(len(a.histories.get(name) or ()) > 1 for a, _b in have):
            out.append(plots.history_svg(f"{name} ({len(have)} child runs)",
                                         [a.histories.get(name) or [] for a, _b in have],
                                         [b.histories.get(name) or [] for _a, b in have]))
        elif have:
            out.append(plots.finals_svg(f"{name} ({len(have)} child runs)",
                                        [(a.metrics[name], b.metrics[name]) for a, b in have]))
    return out


def _tree(comparison: Comparison | None) -> str:
    if comparison is None or not comparison.runs:
        return ""
    rows = [("\u00a0\u00a0" * (r.depth - 1) + r.name, r.original_id, r.replay_id, r.rule,
             "-" if r.status is None else r.status[0] if r.status_ok
             else f"{r.status[0]} → {r.status[1]}", "ok" if r.ok else "; ".join(r.problems()))
            for r in comparison.runs]
    original, replay = comparison.children
    return (f"<h2>Run tree</h2><p>{original} child runs in the original, {replay} in the "
            "replay</p>" + _table(("run", "original", "replay", "matched by", "status", ""),
                                  rows, [not r.ok for r in comparison.runs]))


def _artifacts(comparison: Comparison | None) -> str:
    if comparison is None or comparison.artifacts is None:
        return ""
    rows = [(a.run or "(root)", a.path, a.status, a.reason) for a in comparison.artifacts]
    return "<h2>Artifacts</h2>" + _table(("run", "artifact", "", "why"), rows,
                                         [not a.ok for a in comparison.artifacts])


def _repeat(repeat: Mapping[str, Any] | None) -> str:
    if not repeat:
        return ""
    metrics = repeat.get("metrics") or []
    rows = [(m.get("run") or "(root)", m.get("name"), m.get("kind"), m.get("original"),
             m.get("min"), m.get("max"), m.get("stdev"),
             "-" if m.get("within") is None else "within" if m["within"] else "OUTSIDE",
             "gated" if m.get("gated") else "not gated") for m in metrics]
    return (f"<h2>{repeat.get('replays')} replays: {escape(str(repeat.get('kind')))}</h2>"
            f"<p>{escape(str(repeat.get('verdict')))}</p>"
            + _table(("run", "metric", "kind", "original", "min", "max", "sd", "original",
                      ""), rows, [not m.get("ok") and bool(m.get("gated")) for m in metrics]))


def _hosts(changes: Sequence[Change]) -> str:
    if not changes:
        return ("<h2>Host and environment</h2><p>No difference in CPU, memory, /dev/shm, GPU, "
                "driver or OS between the original's host and the replay's.</p>")
    rows = [(f"{c.category}.{c.field}", c.old, c.new) for c in changes]
    return "<h2>Host and environment differences</h2>" + _table(
        ("what", "original", "replay"), rows, [True] * len(rows))
