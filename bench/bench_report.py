#!/usr/bin/env python3
"""Benchmark `envlock report`'s page: how long it takes to make and to render in real
headless Chromium, for a 50-child search with 200-step histories.

Not a test: run it by hand, from the repository root (Chromium from `scripts/infra.sh up`)::

    .venv/bin/python bench/bench_report.py [--rounds 7] [--children 50] [--steps 200]
                                           [--json FILE]

The run trees are made in memory (the same shape ``tests/unit/test_htmlreport.py`` uses:
a root with a loss curve, N children each with a loss history, a timing metric, one child
drifting from step 120), then, medians over ``--rounds``:

1. making the page: compare the trees and render the HTML with its SVG plots (Python);
2. Chromium loading it and taking a screenshot (a whole headless run), against the same
   headless run on a blank page in the same round: the difference is the page's own
   load-and-render time, the target being under 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envlock.model.htmlreport import render  # noqa: E402
from tests.browser import load  # noqa: E402
from tests.unit.test_htmlreport import ReportData, compare_tree, search  # noqa: E402


def make(children: int, steps: int) -> str:
    original = search("o", 0.0, children, steps)
    replay = search("r", 0.01, children, steps)
    return render(ReportData(original_run_id="oroot", replay_run_id="rroot",
                             verdict="not reproduced",
                             comparison=compare_tree(original, replay),
                             original=original, replay=replay))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="envlock-bench-report-"))
    blank = work / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    make_s, page_s, blank_s = [], [], []
    for _ in range(args.rounds):
        started = time.monotonic()
        page = make(args.children, args.steps)
        make_s.append(time.monotonic() - started)
        (work / "report.html").write_text(page)
        blank_s.append(load(blank, work / "blank.png").seconds)
        shown = load(work / "report.html", work / "report.png")
        assert not shown.console, shown.console
        page_s.append(shown.seconds)
    figures = {"children": args.children, "steps": args.steps, "rounds": args.rounds,
               "page_bytes": len(page.encode()), "svg_plots": page.count("<svg"),
               "make_s": statistics.median(make_s),
               "chromium_page_s": statistics.median(page_s),
               "chromium_blank_s": statistics.median(blank_s)}
    figures["render_s"] = figures["chromium_page_s"] - figures["chromium_blank_s"]
    figures["page_over_blank"] = figures["chromium_page_s"] / figures["chromium_blank_s"]
    for key, value in figures.items():
        print(f"{key:18} {value:.3f}" if isinstance(value, float) else f"{key:18} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
