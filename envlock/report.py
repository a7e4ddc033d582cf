"""Pure: CI reports of a verification — JUnit XML and a Markdown summary."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from envlock.compare import Comparison


def junit(suite: str, run_case: tuple[str, bool, str], comparison: Comparison | None) -> str:
    """One test case for the run itself, one per metric."""
    root = ET.Element("testsuites")
    cases: list[tuple[str, bool, str]] = [run_case]
    for row in comparison.rows if comparison else ():
        cases.append((f"metric {row.name}", row.ok,
                      f"original {row.original}, replay {row.replay}, delta {row.delta}"))
    failures = sum(1 for _, ok, _ in cases if not ok)
    element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                            failures=str(failures), errors="0")
    for name, ok, detail in cases:
        case = ET.SubElement(element, "testcase", classname=suite, name=name)
        if not ok:
            ET.SubElement(case, "failure", message=detail).text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def markdown(title: str, verdict: bool, facts: dict[str, Any],
             comparison: Comparison | None) -> str:
    lines = [f"## {'✅' if verdict else '❌'} {title}: "
             f"{'reproduced' if verdict else 'NOT reproduced'}", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in facts.items()]
    if comparison and comparison.rows:
        lines += ["", "| metric | original | replay | delta | |", "|---|---|---|---|---|"]
        lines += [f"| {r.name} | {r.original} | {r.replay} | {r.delta} | "
                  f"{'ok' if r.ok else '**differs**'} |" for r in comparison.rows]
    return "\n".join(lines) + "\n"
