"""Pure: metric histories of the original against the replay, drawn with matplotlib as
inline SVG (no network, no JavaScript). matplotlib is imported here only, when a report
is made; the same data gives the same bytes (no dates, salted ids).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from envlock.model.compare import History

ORIGINAL, REPLAY = "#1f77b4", "#ff7f0e"  # matplotlib's first two colours
_SIZE = (5.2, 2.9)


def _figure(size: tuple[float, float]) -> Any:
    """A matplotlib Figure without pyplot (no global state, a lighter import)."""
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams.update({"svg.hashsalt": "envlock", "svg.fonttype": "none",
                                "path.simplify": True, "font.size": 8,
                                "axes.spines.top": False, "axes.spines.right": False})
    fig = Figure(figsize=size)
    return fig, fig.add_subplot()


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prolog or DOCTYPE


def history_svg(title: str, original: Sequence[History], replay: Sequence[History],
                first_step: int | None = None) -> str:
    """One metric: every original history (solid) against every replay history (dashed),
    e.g. the root's one each, or one per child run; the first diverging step marked."""
    fig, ax = _figure(_SIZE)
    alpha = 1.0 if len(original) <= 1 else max(0.25, 1.0 / len(original) ** 0.5)
    for histories, colour, style, label in ((original, ORIGINAL, "-", "original"),
                                            (replay, REPLAY, "--", "replay")):
        for i, history in enumerate(histories):
            steps, values = zip(*history, strict=True) if history else ((), ())
            ax.plot(steps, values, style, color=colour, linewidth=1.2, alpha=alpha,
                    label=label if i == 0 else None)
    if first_step is not None:
        ax.axvline(first_step, color="#d62728", linewidth=0.8, linestyle=":",
                   label=f"first differs (step {first_step})")
    ax.set_title(title, loc="left")
    ax.set_xlabel("step")
    ax.legend(frameon=False, fontsize=7)
    return _svg(fig)


def finals_svg(title: str, pairs: Sequence[tuple[float, float]]) -> str:
    """One metric over child runs: the original's last value (x) against the replay's
    (y), with the diagonal where they are equal."""
    fig, ax = _figure((3.4, 3.2))
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    low, high = min(xs + ys), max(xs + ys)
    ax.plot([low, high], [low, high], color="#999999", linewidth=0.8, linestyle=":")
    ax.scatter(xs, ys, s=14, color=REPLAY, edgecolors=ORIGINAL, linewidths=0.8)
    ax.set_title(title, loc="left")
    ax.set_xlabel("original")
    ax.set_ylabel("replay")
    return _svg(fig)
