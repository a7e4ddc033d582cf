"""A small, deterministic YAML writer for envlock's own documents.

Why not ``yaml.dump``: the lockfile must be byte-identical for the same
environment whatever PyYAML version is installed, and importing PyYAML costs
~10 ms of the ~100 ms budget of ``envlock lock``. The subset written here is
mappings, sequences, and scalars (str, int, float, bool, None); every string that
could be read back as anything else is written double-quoted (JSON escapes are
valid YAML), and multi-line text is written as a literal block when that is
exact. Reading is always done by PyYAML's safe loader.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./+@()-]*\Z")
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan",
                       "inf"})
# Characters YAML 1.1 readers do not accept verbatim (NEL, LS, PS and BOM count as
# breaks/marks): the complement of [\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe
# \uff00-\ufffd\U00010000-\U0010ffff]. Spelled as the small positive class: the negated
# one took ~6 ms to compile, on every ``envlock lock``.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff"
                          "\ufffe\uffff]")


def _quoted(text: str) -> str:
    body = json.dumps(text, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) < 0x10000
                            else m.group(), body)


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return _quoted(text)


def _block(text: str, indent: int) -> str | None:
    """``|`` literal block for multi-line text, or None when it would not read back exactly."""
    if "\n" not in text or "\r" in text or _UNPRINTABLE.search(text) or text.startswith("\n"):
        return None
    body = text[:-1] if text.endswith("\n") else text
    chomp = "-" if not text.endswith("\n") else ("+" if body.endswith("\n") else "")
    if chomp == "+" or any(line.strip() == "" and line != "" for line in body.split("\n")):
        return None  # keep-chomping and whitespace-only lines are where readers disagree
    pad = " " * (indent + 2)
    lines = [pad + line if line else "" for line in body.split("\n")]
    return f"|2{chomp}\n" + "\n".join(lines)


def _value(value: Any, indent: int) -> str:
    """Text after ``key:`` or ``-``: a scalar on the same line, or a nested block."""
    if isinstance(value, dict):
        if not value:
            return " {}"
        return "\n" + _mapping(value, indent + 2)
    if isinstance(value, (list, tuple)):
        if not value:
            return " []"
        return "\n" + _sequence(value, indent)
    if isinstance(value, str):
        block = _block(value, indent)
        if block is not None:
            return " " + block
    return " " + scalar(value)


def _mapping(data: dict[Any, Any], indent: int) -> str:
    pad = " " * indent
    return "\n".join(f"{pad}{scalar(str(key))}:{_value(value, indent)}"
                     for key, value in data.items())


def _sequence(items: list[Any] | tuple[Any, ...], indent: int) -> str:
    pad = " " * indent
    out = []
    for item in items:
        if isinstance(item, dict) and item:
            nested = _mapping(item, indent + 2)
            out.append(f"{pad}- {nested[indent + 2:]}")
        elif isinstance(item, (list, tuple)) and item:
            nested = _sequence(item, indent + 2)
            out.append(f"{pad}- {nested[indent + 2:]}")
        else:
            out.append(f"{pad}-{_value(item, indent)}")
    return "\n".join(out)


def dump(data: dict[str, Any]) -> str:
    """YAML text of a mapping, in its insertion order, ending with a newline."""
    return (_mapping(data, 0) if data else "{}") + "\n"
