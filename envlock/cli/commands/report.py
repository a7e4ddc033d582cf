"""``envlock report``: one self-contained HTML page about a replay."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.options import JsonOpt


def report_command(
    run_id: Annotated[str, typer.Argument(
        help="A replay run, or a captured run (its newest replay).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the page. Default: "
        "envlock-report-RUN.html in the working directory.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one HTML page about a replay: verdict, explanations, metrics, history plots.

    The page holds the verdict, why it may differ, the metrics, plots of every metric's history (original against replay), the run tree, the artifacts, the spread of --repeat and the host differences. It is self-contained (inline SVG, no script, nothing fetched): open it offline or keep it as a CI artifact. Every replay run also carries it as envlock/report.html. The plots need matplotlib (pip install 'envlock[report]')."""  # noqa: E501 - one paragraph, wrapped by the terminal
    from envlock import config
    from envlock.cli import output as out
    from envlock.errors import UsageError
    from envlock.model.htmlreport import render
    from envlock.operations import report
    from envlock.operations.connect import open_tracker

    out.begin("report", as_json)
    if not report.plotting_available():
        raise UsageError("envlock report draws its plots with matplotlib, which is not "
                         "installed", "pip install 'envlock[report]'")
    tracker = open_tracker()
    original, replay = report.replay_of(tracker, run_id)
    data = report.gather(tracker, original, replay, config.load().metric_policy())
    path = output or Path(f"envlock-report-{replay[:12]}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    raise typer.Exit(out.emit({"path": str(path), "original_run_id": original,
                               "replay_run_id": replay, "verdict": data.verdict},
                              f"{data.verdict.upper()}: report of replay {replay} of "
                              f"{original} written to {path}"))


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
