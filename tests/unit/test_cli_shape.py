"""The CLI stays thin and its help readable: commands import no sibling command (shared
options live in envlock.cli.options, connections in envlock.operations.connect), command
functions are short, helpers take few parameters, help texts keep their brackets and have
no hard line breaks in their sentences (test_audit.py: nothing heavy is imported for help)."""

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envlock.cli.helptext import reflow
from envlock.cli.main import COMMANDS, make_app

PACKAGE = Path(__file__).resolve().parents[2] / "envlock"
COMMANDS_DIR = PACKAGE / "cli" / "commands"
#: Owned by the replay/verify redesign (issue #21 item 1), which repoints their imports at
#: envlock.cli.options / envlock.operations.connect when it merges: then empty this set.
REPOINTED_AT_MERGE: set[str] = set()


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):  # relative: from . import x / from .x import y
            found.add("envlock.cli.commands." + (node.module or node.names[0].name))
    return found


def command_modules() -> list[str]:
    return sorted(p.name for p in COMMANDS_DIR.glob("*.py")
                  if p.name != "__init__.py" and p.name not in REPOINTED_AT_MERGE)


@pytest.mark.parametrize("module", command_modules())
def test_no_command_module_imports_another(module):
    siblings = {f"envlock.cli.commands.{p.stem}" for p in COMMANDS_DIR.glob("*.py")}
    bad = sorted(name for name in imported_modules(COMMANDS_DIR / module)
                 if name in siblings or name.rsplit(".", 1)[0] in siblings)
    assert not bad, f"envlock/cli/commands/{module} imports {bad}: shared options belong " \
        "in envlock.cli.options, connections in envlock.operations.connect"


def test_the_scan_sees_sibling_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from envlock.cli.commands.lock import JsonOpt\n"
                     "def f():\n    from .build import x\n    import envlock.cli.commands.audit\n")
    assert {"envlock.cli.commands.lock.JsonOpt", "envlock.cli.commands.build",
            "envlock.cli.commands.audit"} <= imported_modules(probe)


def test_connection_set_up_is_orchestration_without_the_cli():
    names = imported_modules(PACKAGE / "operations" / "connect.py")
    assert not {n for n in names if n.split(".")[0] in ("typer", "click", "rich")}
    assert not {n for n in names if n.startswith("envlock.cli")}


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            params = [p for p in params if p not in ("self", "cls")]
            count = len(params) + bool(args.vararg) + bool(args.kwarg)
            yield node.name, node.end_lineno - node.lineno + 1, count


@pytest.mark.parametrize("module", sorted(
    p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "cli").rglob("*.py")
    if p.name not in REPOINTED_AT_MERGE))
def test_cli_functions_are_short_and_helpers_take_few_parameters(module):
    for name, lines, params in _functions(PACKAGE / module):
        assert lines <= 60, f"envlock/{module}: {name} is {lines} lines long"
        if not name.endswith("_command"):  # a command's parameters are the CLI itself
            assert params <= 8, f"envlock/{module}: {name} takes {params} parameters"


def _help(args: list[str], columns: int) -> str:
    """``envlock ARGS`` rendered ``columns`` wide (typer's rich console reads its width from
    $TERMINAL_WIDTH once, at import)."""
    import typer.rich_utils

    width = typer.rich_utils.MAX_WIDTH
    typer.rich_utils.MAX_WIDTH = columns
    try:
        result = CliRunner().invoke(make_app(), args)
    finally:
        typer.rich_utils.MAX_WIDTH = width
    assert result.exit_code == 0, result.output
    return result.output


def test_config_help_shows_the_pyproject_table_literally():
    assert "[tool.envlock]" in _help(["config", "--help"], 80)


def test_help_keeps_every_bracket_of_every_help_text():
    import typer.main

    from envlock.cli.helptext import readable

    group = typer.main.get_command(make_app())
    for name, command in group.commands.items():
        readable(command)
        for text in [command.help or ""] + [getattr(p, "help", "") or "" for p in
                                            command.params]:
            from rich.text import Text

            assert Text.from_markup(text).plain.count("[") == \
                text.replace("\\[", "[").count("["), (name, text)


#: Example command lines a help text shows on lines of their own.
EXAMPLES = ("pip ", "uv ", "envlock ", "docker ", "kubectl ")


def _broken_sentences(lines: list[str]) -> list[str]:
    """Consecutive text lines where the first stops mid-sentence."""
    return [f"{a!r} / {b!r}" for a, b in zip(lines, lines[1:], strict=False)
            if a and b and not a.endswith((".", ":", "!", "?", ")"))
            and not a.startswith(EXAMPLES)]


def test_no_command_summary_is_broken_over_lines():
    """Wide enough that rich never wraps: each command is one line in the listing."""
    text = _help(["--help"], 1000)
    panel = text.split("Commands")[1].splitlines()[1:]
    rows = [line.strip("│ ").strip() for line in panel if line.startswith("│")]
    assert len(rows) == len(COMMANDS)
    assert all(row.split()[0] in COMMANDS for row in rows), rows


@pytest.mark.parametrize("command", [[]] + [[name] for name in sorted(COMMANDS)])
def test_no_help_text_has_a_hard_break_mid_sentence(command):
    text = _help([*command, "--help"], 1000)
    body = text.split("Usage:")[1].split("╭")[0].splitlines()[1:]
    lines = [line.strip() for line in body]
    assert not _broken_sentences(lines), _broken_sentences(lines)


def test_reflow_joins_paragraph_lines_and_keeps_indented_blocks():
    doc = """Summary that
    runs over.

    Body line one
    and two.

      pip install x
      uv pip install y"""
    assert reflow(doc) == ("Summary that runs over.\n\nBody line one and two.\n\n"
                           "  pip install x\n  uv pip install y")
