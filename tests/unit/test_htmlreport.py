"""The HTML report: one self-contained page (inline SVG plots, no script, nothing
fetched), the same bytes for the same data, with the verdict, explanations, metrics,
plots, run tree, --repeat spread and host differences."""

from __future__ import annotations

import re

import pytest

from envlock.model.compare import compare_tree
from envlock.model.diff import Change
from envlock.model.htmlreport import ReportData, render
from envlock.model.runtree import RunNode

pytestmark = pytest.mark.extra("matplotlib")


def search(prefix: str, drift: float = 0.0, children: int = 50, steps: int = 200) -> RunNode:
    """A 50-candidate search, each child with a 200-step loss history."""
    kids = []
    for i in range(children):
        history = [(s, 1.0 / (s + 1 + i) + (drift if s >= 120 and i == 3 else 0.0))
                   for s in range(steps)]
        kids.append(RunNode(f"{prefix}{i}", f"cand-{i}", {"C": str(i)},
                            {"loss": history[-1][1], "mean_fit_time": 0.1 * i}, i,
                            status="FINISHED", histories={"loss": history}))
    curve = [(s, 2.0 / (s + 1)) for s in range(steps)]
    return RunNode(f"{prefix}root", "search", {"cv": "3"}, {"best": 0.9, "loss": curve[-1][1]},
                   0, tuple(kids), "FINISHED", {"loss": curve, "best": [(0, 0.9)]})


def data(drift: float = 0.0) -> ReportData:
    original, replay = search("o"), search("r", drift)
    return ReportData(
        original_run_id="oroot", replay_run_id="rroot",
        verdict="not reproduced" if drift else "reproduced",
        comparison=compare_tree(original, replay), original=original, replay=replay,
        explanations=[{"kind": "env", "score": 85, "title": "the replay was given <vars>",
                       "evidence": ["DATA_SHIFT: original not recorded, replay 0.5"]}],
        host_changes=[Change("host", "cpu.usable_cores", 8, 2)],
        repeat={"replays": 3, "kind": "nondeterministic", "verdict": "nondeterministic: …",
                "metrics": [{"run": "", "name": "loss", "kind": "noise", "original": 0.5,
                             "min": 0.4, "max": 0.6, "stdev": 0.1, "within": True,
                             "ok": True, "gated": True}]},
        facts={"image": "127.0.0.1:5000/x@sha256:ab"})


def test_the_page_is_self_contained_and_has_every_section():
    page = render(data(drift=0.01))
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    # nothing to fetch: no src/href/url() pointing anywhere (SVG namespaces are names)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page)
    assert "url(http" not in page and "@import" not in page
    assert page.count("<svg") == 3  # root loss; the children: loss histories, fit times
    for heading in ("Why it may differ", "Metrics of the run", "Metric histories",
                    "Run tree", "3 replays: nondeterministic", "Host and environment"):
        assert heading in page, heading
    assert "the replay was given &lt;vars&gt;" in page  # escaped
    assert "NOT REPRODUCED" in page and "cand-3" in page and "host.cpu.usable_cores" in page


def test_the_same_data_gives_the_same_bytes():
    assert render(data()) == render(data())
