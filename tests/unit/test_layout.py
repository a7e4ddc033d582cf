"""The layout is the architecture: pure packages (model, image) never import an adapter,
an orchestration module or a library that does I/O on other systems. Walked with ast, so
a lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "envlock"
PURE = ("model", "image")
FORBIDDEN = ("docker", "mlflow", "kubernetes", "requests", "subprocess", "urllib.request",
             "envlock.adapters", "envlock.operations", "envlock.cli", "envlock.snapshot")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("module", sorted(p.relative_to(PACKAGE).as_posix()
                                          for pkg in PURE for p in (PACKAGE / pkg).rglob("*.py")))
def test_pure_modules_import_nothing_that_talks_to_other_systems(module):
    bad = sorted(name for name in imports(PACKAGE / module) if forbidden(name))
    assert not bad, f"envlock/{module} is in a pure package but imports {bad}"


def test_the_walk_sees_lazy_imports():
    source = "def f():\n    import docker\n    from envlock.adapters import proc\n"
    tree = PACKAGE.parent / "tests" / "unit" / "_layout_probe.py"
    tree.write_text(source)
    try:
        assert {n for n in imports(tree) if forbidden(n)} == {"docker", "envlock.adapters",
                                                              "envlock.adapters.proc"}
    finally:
        tree.unlink()


def test_every_module_lives_in_a_package_that_says_what_it_is():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "api.py", "config.py", "errors.py",
                   "progress.py"], top


@pytest.mark.parametrize("module", sorted(p.relative_to(PACKAGE).as_posix()
                                          for p in (PACKAGE / "snapshot").rglob("*.py")))
def test_probes_never_reach_up_into_operations_or_the_cli(module):
    bad = sorted(name for name in imports(PACKAGE / module)
                 if name.startswith(("envlock.operations", "envlock.cli")))
    assert not bad, f"envlock/{module} is a probe but imports {bad}"




def test_import_linter_contracts_hold(capsys):
    """The layers and the "only adapters talk to other systems" rule of
    ``[tool.importlinter]`` in pyproject.toml, checked by import-linter itself (the same
    check as ``lint-imports`` and the pre-commit hook)."""
    from importlinter.application.use_cases import lint_imports
    from importlinter.configuration import configure

    configure()
    kept = lint_imports(config_filename=str(PACKAGE.parent / "pyproject.toml"),
                        cache_dir=None, no_logo=True, is_debug_mode=True)
    report = capsys.readouterr().out
    assert kept, report
