"""Pure: a recorded ``uv run …`` command as the image runs it.

The image has no uv: its environment is already the project's (every locked package
installed into its venv, whose ``bin`` is first on ``PATH``), so what ``uv run`` would
sync first is there, and the command after ``uv run``'s own options runs as it is:

    uv run train.py --lr 0.1          ->  python train.py --lr 0.1
    uv run --frozen python train.py   ->  python train.py
    uv run -m pkg.train               ->  python -m pkg.train
    uv run torchrun --nproc-per-node 2 train.py  ->  torchrun --nproc-per-node 2 train.py
    uv run --directory src train.py   ->  cd src && python train.py

uv's options that choose what to sync or where to resolve from (``--frozen``,
``--locked``, ``--extra``, ``--group``, ``--index``, ``--python`` …) have nothing left
to do and are dropped; ``--with``/``--with-requirements`` name packages outside the
locked environment, which the image does not have (the replay then fails as the
command would without them). Leading ``NAME=value`` assignments are kept. Anything
else - not a ``uv run`` command, or a compound shell command - is returned unchanged.
"""

from __future__ import annotations

import re
import shlex

#: ``uv run`` options that take a value (as the next word or after ``=``).
VALUED = frozenset({
    "--python", "-p", "--with", "--with-editable", "--with-requirements", "--extra",
    "--group", "--only-group", "--no-group", "--package", "--directory", "--project",
    "--env-file", "--index", "--default-index", "--index-url", "-i", "--extra-index-url",
    "--find-links", "-f", "--index-strategy", "--keyring-provider", "--resolution",
    "--prerelease", "--exclude-newer", "--exclude-newer-package", "--link-mode",
    "--config-setting", "-C", "--config-settings-package", "--python-platform",
    "--cache-dir", "--color", "--config-file", "--no-build-isolation-package",
    "--no-binary-package", "--no-build-package", "--upgrade-package", "-P",
    "--reinstall-package", "--refresh-package", "--no-sources-package", "--allow-insecure-host",
})
PYTHONS = re.compile(r"^python(\d+(\.\d+)?)?$")
SCRIPT = re.compile(r".+\.pyw?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL = frozenset({"&&", "||", ";", "|", "&", "(", ")", "<", ">", ">>"})


def _split(command: str) -> list[str] | None:
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if any(word in _SHELL or word.endswith(";") for word in argv):
        return None  # a compound command: not ours to rewrite
    return argv


def _is_uv_run(argv: list[str], at: int) -> bool:
    return len(argv) > at + 1 and argv[at].rsplit("/", 1)[-1] == "uv" and argv[at + 1] == "run"


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """uv run's options (those with a value, by name) and the command after them."""
    values: dict[str, str] = {}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return values, argv[index + 1:]
        if not word.startswith("-"):
            return values, argv[index:]
        name, equals, value = word.partition("=")
        if name in ("-m", "--module"):
            module = [value] if equals else []
            return values, ["python", "-m", *module, *argv[index + 1:]]
        if name in VALUED and not equals:
            if index + 1 >= len(argv):
                return None
            value = argv[index + 1]
            index += 1
        values[name] = value
        index += 1
    return None  # no command: `uv run` alone starts nothing we can replay


def replay_command(command: str | None) -> str | None:
    """``command`` as the image runs it (see module docs)."""
    if not command:
        return command
    argv = _split(command)
    if argv is None:
        return command
    at = 0
    while at < len(argv) and _ASSIGNMENT.match(argv[at]):
        at += 1
    if not _is_uv_run(argv, at):
        return command
    parsed = _options(argv[at + 2:])
    if parsed is None or not parsed[1]:
        return command
    values, rest = parsed
    if SCRIPT.fullmatch(rest[0]) and not PYTHONS.match(rest[0]):
        rest = ["python", *rest]
    line = shlex.join([*argv[:at], *rest])
    where = values.get("--directory")
    return f"cd {shlex.quote(where)} && {line}" if where else line
