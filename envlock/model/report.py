"""Pure: CI reports of a gate (``verify``, ``check``) — JUnit XML and a Markdown summary.

Each gate turns its result into test cases (one per thing a reader wants to see pass
or fail); the same cases feed the JUnit file and the Markdown summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from envlock.model.compare import Comparison


@dataclass(frozen=True)
class Case:
    name: str
    ok: bool
    detail: str
    skipped: bool = False  # shown, not part of the verdict (a metric not gated)


def junit(suite: str, cases: Sequence[Case]) -> str:
    root = ET.Element("testsuites")
    failures = sum(1 for c in cases if not c.ok)
    element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                            failures=str(failures), errors="0",
                            skipped=str(sum(1 for c in cases if c.skipped)))
    for case in cases:
        node = ET.SubElement(element, "testcase", classname=suite, name=case.name)
        if case.skipped:
            ET.SubElement(node, "skipped", message=case.detail)
        elif not case.ok:
            ET.SubElement(node, "failure", message=case.detail).text = case.detail
        else:
            ET.SubElement(node, "system-out").text = case.detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def markdown(title: str, ok: bool, verdict: str, facts: dict[str, Any],
             header: Sequence[str] = (), rows: Iterable[Sequence[Any]] = ()) -> str:
    lines = [f"## {'✅' if ok else '❌'} {title}: {verdict}", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in facts.items()]
    rows = list(rows)
    if header and rows:
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(junit_path: Path | None, markdown_path: Path | None, suite: str,
          cases: Sequence[Case], summary: str) -> None:
    """Write the requested reports; append the summary to ``$GITHUB_STEP_SUMMARY``."""
    for path, text in ((junit_path, junit(suite, cases)), (markdown_path, summary)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)  # e.g. --junit reports/check.xml
            path.write_text(text, encoding="utf-8")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(summary)


# ----------------------------------------------------------------------------- verify
def verify_cases(run_case: Case, comparison: Comparison | None,
                 relay: Any = None) -> list[Case]:
    """The replay itself, the relay, then one case per gated metric of the root, one for
    the params, one per child run of the tree, one per compared artifact, and one skipped
    case per metric shown but not gated (over every run that has it)."""
    cases = [run_case]
    if relay is not None:
        cases.append(Case("relay", relay.complete, relay.summary() if relay.complete
                          else "incomplete: " + "; ".join(relay.missing)))
    if comparison is None:
        return cases
    cases += [Case(f"metric {row.name}", row.ok, _metric_detail(row))
              for row in comparison.rows if row.gated]
    changed = [p for p in comparison.params if not p.ok]
    cases.append(Case("params", not changed, "; ".join(
        f"{p.name}: {p.original!r} -> {p.replay!r}" for p in changed)
        or f"{len(comparison.params)} params the same"))
    for run in comparison.runs:
        cases.append(Case(f"run {run.name} ({run.original_id or run.replay_id})", run.ok,
                          _run_detail(run)))
    for artifact in comparison.artifacts or ():
        label = f"{artifact.run}/" if artifact.run else ""
        cases.append(Case(f"artifact {label}{artifact.path}", artifact.ok, artifact.status
                          + (f": {artifact.reason}" if artifact.reason else "")))
    root = {r.name: r for r in comparison.rows}
    for metric in comparison.ungated():
        values = f"{_metric_detail(root[metric.name])}; " if metric.name in root else ""
        cases.append(Case(f"metric {metric.name} (not gated)", True,
                          f"not gated ({metric.rule}; --strict gates it): {values}differs "
                          f"in {metric.differ} of {metric.runs} run(s)", skipped=True))
    return cases


def _metric_detail(row: Any) -> str:
    text = f"original {row.original}, replay {row.replay}, delta {row.delta}"
    if row.divergence is not None:
        d = row.divergence
        text += (f"; history first differs at step {d.step}: original {d.original}, "
                 f"replay {d.replay}")
    return text


def _run_detail(run: Any) -> str:
    if run.rule in ("missing", "extra"):
        return f"{run.rule} in the replay"
    gated = [m for m in run.metrics if m.gated]
    differs = [f"{m.name} {m.original} -> {m.replay}"
               + (f" (from step {m.divergence.step})" if m.divergence else "")
               for m in gated if not m.ok]
    ungated = [m.name for m in run.metrics if not m.gated and not m.ok]
    changed = [f"{p.name} {p.original!r} -> {p.replay!r}" for p in run.params if not p.ok]
    status = run.status[1] if run.status else "-"
    return (f"replay run {run.replay_id}, matched by {run.rule}, status {status}"
            + ("" if run.status_ok else f" (original {run.status[0] if run.status else '-'})")
            + ("" if run.name_ok else f", name {run.replay_name!r}") + "; "
            f"{len(gated) - len(differs)}/{len(gated)} metrics same"
            + (f"; differ: {', '.join(differs)}" if differs else "")
            + (f"; not gated, differ: {', '.join(ungated)}" if ungated else "")
            + (f"; params changed: {', '.join(changed)}" if changed else ""))


def verify_markdown(run_id: str, reproduced: bool, facts: dict[str, Any],
                    comparison: Comparison | None) -> str:
    rows = [(r.name, r.original, r.replay, r.delta, "ok" if r.ok else "**differs**")
            for r in (comparison.rows if comparison else ()) if r.gated]
    text = markdown(f"envlock verify {run_id}", reproduced,
                    "reproduced" if reproduced else "NOT reproduced", facts,
                    ("metric", "original", "replay", "delta", ""), rows)
    if comparison is None:
        return text
    extra = [f"- relay incomplete: {m}" for m in comparison.relay_missing]
    extra += [f"- param `{p.name}`: `{p.original}` → `{p.replay}`"
              for p in comparison.params if not p.ok]
    extra += [f"- history of `{row.name}` ({'child ' + label if label else 'root'}) first "
              f"differs at step {d.step}: original `{d.original}`, replay `{d.replay}`"
              for label, row, d in comparison.divergences()]
    if comparison.runs:
        extra += ["", f"{comparison.children[0]} child runs in the original, "
                  f"{comparison.children[1]} in the replay", "",
                  "| run | original | replay | matched by | status | |",
                  "|---|---|---|---|---|---|"]
        extra += [f"| {'&nbsp;' * 2 * (r.depth - 1)}{r.name} | {r.original_id or '-'} | "
                  f"{r.replay_id or '-'} | {r.rule} | {_status(r)} | "
                  f"{'ok' if r.ok else '**differs**: ' + _cell('; '.join(r.problems()))} |"
                  for r in comparison.runs]
    extra += _ungated_markdown(comparison)
    if comparison.artifacts is not None:
        extra += ["", "| run | artifact | |", "|---|---|---|"]
        extra += [f"| {a.run or '(root)'} | {a.path} | "
                  f"{a.status if a.ok else '**' + a.status + '**'}"
                  f"{': ' + _cell(a.reason) if a.reason else ''} |"
                  for a in comparison.artifacts]
    return text + ("\n".join(extra) + "\n" if extra else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _status(run: Any) -> str:
    if run.status is None:
        return "-"
    return run.status[0] if run.status_ok else f"**{run.status[0]} → {run.status[1]}**"


def _ungated_markdown(comparison: Comparison) -> list[str]:
    ungated = comparison.ungated()
    if not ungated:
        return []
    root = {r.name: r for r in comparison.rows}
    lines = ["", "Not gated (time, throughput or the machine; `--strict` gates them):", "",
             "| metric | original | replay | differs in | not gated by |", "|---|---|---|---|---|"]
    for metric in ungated:
        row = root.get(metric.name)
        lines.append(f"| {metric.name} | {row.original if row else '-'} | "
                     f"{row.replay if row else '-'} | {metric.differ}/{metric.runs} runs | "
                     f"`{metric.rule}` |")
    return lines


# ------------------------------------------------------------------------------ repeat
def repeat_cases(result: Any) -> list[Case]:
    """``verify --repeat N`` (an ``operations.repeat.RepeatResult``): one case per replay
    (its exit code), one for what else must reproduce (params, child runs, relay), one
    per gated metric with its classification, one per artifact that is not equal, and a
    skipped case per metric not gated."""
    cases = [Case(f"replay {n} of {r.original_run_id}", r.exit_code == 0,
                  f"exit code {r.exit_code}, replay run {r.replay_run_id}")
             for n, r in enumerate(result.results, 1)]
    repeat = result.repeat
    if repeat is None:
        return cases + [Case("comparison", False, "the replays were not compared")]
    cases.append(Case("params, child runs and relay", not repeat.problems,
                      "; ".join(repeat.problems) or "the same in every replay"))
    for spread in repeat.spreads:
        label = f"metric {spread.name}" + (f" (child {spread.run})" if spread.run else "")
        cases.append(Case(label + ("" if spread.gated else " (not gated)"), spread.passes,
                          spread.describe(), skipped=not spread.gated))
    cases += [Case(f"artifact {(a.run + '/') if a.run else ''}{a.path}", a.ok,
                   f"{a.kind} over {repeat.replays} replays")
              for a in repeat.artifacts if a.kind != "equal"]
    return cases


def repeat_markdown(run_id: str, result: Any) -> str:
    repeat = result.repeat
    kind = repeat.kind if repeat else "not compared"
    facts = {"run": run_id, "replay runs": ", ".join(str(r.replay_run_id)
                                                     for r in result.results),
             "classification": repeat.verdict if repeat else kind}
    rows = [(s.name, s.run or "(root)", s.kind, s.original, s.low, s.high,
             "within" if s.within else "**outside**" if s.within is False else
             "ok" if s.ok else "**differs**")
            for s in (repeat.spreads if repeat else ()) if s.gated]
    text = markdown(f"envlock verify --repeat {len(result.results)} {run_id}", result.passes,
                    ("reproduced" if result.passes else "NOT reproduced") + f" ({kind})",
                    facts, ("metric", "run", "kind", "original", "min", "max", "original"),
                    rows)
    return text + "".join(f"- {_cell(p)}\n" for p in (repeat.problems if repeat else ()))


# ------------------------------------------------------------------------------ sweep
def sweep_cases(items: Sequence[Any]) -> list[Case]:
    """One case per replayed run of a sweep (``operations.kube.SweepItem``)."""
    return [Case(f"replay of {i.run_id}", i.reproduced, _sweep_detail(i)) for i in items]


def _sweep_detail(item: Any) -> str:
    if item.error:
        return f"infrastructure error: {item.error}"
    result = item.result
    verdict = "reproduced" if item.reproduced else "NOT reproduced"
    return (f"{verdict}: exit {result.exit_code}, replay run {result.replay_run_id}, "
            f"job {result.job}")


def sweep_markdown(experiment: str, items: Sequence[Any]) -> str:
    ok = sum(1 for i in items if i.reproduced)
    rows = [(i.run_id, i.result.replay_run_id if i.result else "-",
             "reproduced" if i.reproduced else ("**error**" if i.error else "**NOT reproduced**"),
             i.error or (i.result.job if i.result else "")) for i in items]
    return markdown(f"envlock verify --experiment {experiment}", ok == len(items),
                    f"{ok}/{len(items)} reproduced",
                    {"experiment": experiment, "runs": len(items)},
                    ("run", "replay run", "verdict", "job / error"), rows)


# ------------------------------------------------------------------------------ check
def check_cases(result: Any) -> list[Case]:
    """``envlock check``: the environment digest, one case per package difference, one
    per other category (failing only where it counts as drift), and RECORD integrity."""
    from envlock.model.diff import ENV_CATEGORIES

    diff = result.diff
    digest = result.env_digest_locked == result.env_digest_live
    cases = [Case("environment digest", not diff.env_changed,
                  f"locked {result.env_digest_locked}, live {result.env_digest_live}"
                  + ("" if digest else " (differs)"))]
    for change in diff.packages:
        old = f"{change.old_version} ({change.old_source})" if change.old_version else "absent"
        new = f"{change.new_version} ({change.new_source})" if change.new_version else "absent"
        cases.append(Case(f"package {change.name}", False,
                          f"{change.kind}: locked {old}, live {new}"))
    grouped = diff.by_category()
    for category in ("python", "frameworks", "gpu", "host", "os", "git", "code", "runtime"):
        changes = grouped.get(category, [])
        counts = category in ENV_CATEGORIES or result.strict
        detail = "; ".join(f"{c.field}: {c.old!r} -> {c.new!r}" for c in changes) or "same"
        if changes and not counts:
            detail += " (not drift without --strict)"
        cases.append(Case(category, not (changes and counts), detail))
    if result.integrity is not None:
        integrity = result.integrity
        detail = (f"{integrity.files_checked} files of {integrity.packages_checked} packages "
                  "match RECORD") if integrity.ok else "; ".join(
            f"{p.package}: {p.problem} {p.path}" for p in integrity.problems[:20])
        cases.append(Case("installed files (RECORD)", integrity.ok, detail))
    return cases


def check_markdown(result: Any, cases: Sequence[Case]) -> str:
    ok = not result.drifted
    facts = {"lock": result.lock_path, "locked env digest": result.env_digest_locked,
             "live env digest": result.env_digest_live, "strict": result.strict}
    rows = [(c.name, "ok" if c.ok else "**drift**", c.detail.replace("|", "\\|"))
            for c in cases]
    return markdown("envlock check", ok, "environment matches the lock" if ok
                    else "DRIFT from the lock", facts, ("check", "", "detail"), rows)
