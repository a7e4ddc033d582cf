"""The names envlock writes into tracking stores and images live in one module.

A tag spelled out somewhere else drifts from its readers (a dashboard, an older release
reading a newer run), so this fails on any ``"envlock.…"`` string in the package that is not
a module name, a file name or a JUnit suite name, and on a name the docs page leaves out.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from envlock.model import runrecord

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "envlock"
NAME = re.compile(r"^envlock\.[a-z0-9_.]+$")
# not run-record names: files users keep, and the JUnit suites' names
NOT_TAGS = {"envlock.lock.yaml", "envlock.yaml", "envlock.key", "envlock.pub",
            "envlock.verify", "envlock.check", "envlock.audit"}


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(runrecord).items()
            if k.isupper() and isinstance(v, str)}


def _is_module(value: str) -> bool:
    try:
        return importlib.util.find_spec(value.rstrip(".")) is not None
    except ModuleNotFoundError:
        return False


def test_no_envlock_name_is_spelled_out_outside_the_run_record() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "runrecord.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and NAME.match(node.value) and node.value not in NOT_TAGS \
                    and not _is_module(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "use envlock.model.runrecord's constant instead:\n" + "\n".join(found)


def test_the_checker_sees_a_spelled_out_tag() -> None:
    tree = ast.parse('tags.get("envlock.replay_of")\nimport_module("envlock.api")')
    hits = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and NAME.match(n.value) and not _is_module(n.value)]
    assert hits == ["envlock.replay_of"]


def test_every_name_is_documented_once() -> None:
    page = (ROOT / "docs" / "run-record.md").read_text()
    missing = [f"{k} = {v!r}" for k, v in _names().items()
               if not k.startswith("LABEL_") or v.startswith("envlock.")
               if f"`{v}`" not in page and not (k.startswith("LABEL_") and v in _tag_values())]
    assert not missing, "docs/run-record.md does not list:\n" + "\n".join(missing)


def _tag_values() -> set[str]:
    return {v for k, v in _names().items() if not k.startswith("LABEL_")}


def test_names_are_unique_apart_from_labels_that_are_tags() -> None:
    tags = [v for k, v in _names().items() if not k.startswith("LABEL_")]
    assert len(tags) == len(set(tags))
    labels = {k: v for k, v in _names().items() if k.startswith("LABEL_")}
    own = [v for v in labels.values() if v not in tags]
    assert len(own) == len(set(own))
    assert all(v.startswith("envlock.") for v in labels.values())
