"""Pure: why a text artifact differs between the original and its replay — the first
differing line, with both sides; for JSON and YAML, first whether the data is the same
and only its layout (formatting, key order) differs.

Text is what a name says is text (:data:`TEXT_SUFFIXES`, :data:`TEXT_NAMES`, such as
MLflow's ``MLmodel``) and decodes as UTF-8; files over :data:`MAX_BYTES` are not read.
"""

from __future__ import annotations

import json
from typing import Any

TEXT_SUFFIXES = (".txt", ".json", ".jsonl", ".yaml", ".yml", ".csv", ".tsv", ".md", ".log",
                 ".toml", ".ini", ".cfg", ".html", ".xml", ".py")
TEXT_NAMES = ("MLmodel", "MLproject")
MAX_BYTES = 1 << 20
_SHOWN = 120  # characters of a line shown


def is_text(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in TEXT_NAMES or name.lower().endswith(TEXT_SUFFIXES)


def explain(path: str, original: bytes, replay: bytes) -> str:
    """One line: what differs in ``path`` (its two versions' contents)."""
    try:
        a, b = original.decode("utf-8"), replay.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text: compared by sha256 only"
    kind = _data_kind(path)
    if kind and _same_data(kind, a, b):
        return f"the same {kind} data; only its layout (formatting, key order) differs"
    return first_line(a.splitlines(), b.splitlines())


def first_line(a: list[str], b: list[str]) -> str:
    for number, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"line {number} differs: original {_cut(x)}, replay {_cut(y)}"
    if len(a) != len(b):
        longer, side = (a, "original") if len(a) > len(b) else (b, "replay")
        number = min(len(a), len(b)) + 1
        return f"line {number} only in the {side}: {_cut(longer[number - 1])}"
    return "the same lines; only line endings or the final newline differ"


def _cut(line: str) -> str:
    return repr(line if len(line) <= _SHOWN else line[:_SHOWN] + "…")


def _data_kind(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".json"):
        return "JSON"
    if name.endswith((".yaml", ".yml")) or name == "mlmodel":
        return "YAML"
    return None


def _same_data(kind: str, a: str, b: str) -> bool:
    try:
        return bool(_load(kind, a) == _load(kind, b))
    except ValueError:
        return False


def _load(kind: str, text: str) -> Any:
    if kind == "JSON":
        return json.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc
