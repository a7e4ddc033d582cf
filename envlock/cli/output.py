"""The one place results are rendered: human text, or a versioned JSON envelope."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Version of the ``--json`` envelope; bump on incompatible changes.
JSON_SCHEMA = "envlock.result/1"


class _State:
    json = False
    command = ""
    warned: set[str] = set()  # reset by begin(): one command per process


STATE = _State()


def begin(command: str, as_json: bool) -> None:
    STATE.command = command
    STATE.json = as_json
    STATE.warned = set()


def emit(result: dict[str, Any], human: str, exit_code: int = 0) -> int:
    if STATE.json:
        envelope = {"schema": JSON_SCHEMA, "command": STATE.command, "ok": exit_code == 0,
                    "exit_code": exit_code, "result": result}
        sys.stdout.write(json.dumps(envelope, indent=2, default=str) + "\n")
    elif human:
        sys.stdout.write(human.rstrip("\n") + "\n")
    return exit_code


def emit_error(kind: str, message: str, exit_code: int) -> None:
    sys.stderr.write(f"envlock: error: {message}\n")
    if STATE.json:
        envelope = {"schema": JSON_SCHEMA, "command": STATE.command, "ok": False,
                    "exit_code": exit_code, "error": {"type": kind, "message": message}}
        sys.stdout.write(json.dumps(envelope, indent=2) + "\n")


def warn(message: str) -> None:
    """Once per message: a warning shown early (``notify``) is not repeated at the end."""
    if message in STATE.warned:
        return
    STATE.warned.add(message)
    sys.stderr.write(f"envlock: warning: {message}\n")


def note(message: str) -> None:
    sys.stderr.write(f"envlock: {message}\n")


def notify(kind: str, text: str) -> None:
    """For long operations: a ``warning`` or a ``note`` to stderr as soon as it is known."""
    (warn if kind == "warning" else note)(text)


def secret_warnings(scan: dict[str, Any] | None, where: str) -> list[str]:
    """What a content scan withheld (by file and kind of secret, never the value) and kept
    on ``--allow-file``, as warning lines."""
    if not scan:
        return []
    out = []
    if scan.get("withheld"):
        named = ", ".join(f"{e['path']} ({e['kind']}"
                          + (f"; {len(e['hunks'])} hunk{'s' * (len(e['hunks']) != 1)} of the "
                             "diff" if e.get("hunks") else "") + ")" for e in scan["withheld"])
        out.append(f"left out of {where} because their content looks like a secret: {named}; "
                   "keep a false positive with --allow-file PATH")
    if scan.get("allowed"):
        out.append("kept although their content looks like a secret (--allow-file): "
                   + ", ".join(f"{e['path']} ({e['kind']})" for e in scan["allowed"]))
    return out


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Left-aligned plain-text columns (CI logs read these as well as terminals)."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def passthrough(to_stderr: bool) -> Callable[[bytes], None]:
    """A writer for an experiment's own output: stdout, or stderr when stdout carries JSON."""
    stream = sys.stderr.buffer if to_stderr else sys.stdout.buffer

    def write(chunk: bytes) -> None:
        stream.write(chunk)
        stream.flush()

    return write
