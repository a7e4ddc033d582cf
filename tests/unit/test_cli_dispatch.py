"""`envlock CMD` registers only CMD's module: the mapping must match what the modules register."""

import pytest
import typer.main

from envlock.cli.main import COMMANDS, MODULES, command_module, make_app


@pytest.mark.parametrize("argv, module", [
    (["lock", "--python", "x"], "lock"), (["--debug", "lock"], "lock"),
    (["lineage", "RUN"], "replay"), (["export", "RUN"], "archive"),
    (["import", "f.tar"], "archive"),
    ([], None), (["--help"], None), (["--version"], None), (["lok"], None), (["archive"], None),
])
def test_command_module(argv, module):
    assert command_module(argv) == module


def test_every_command_is_mapped_to_the_module_that_registers_it():
    everything = typer.main.get_command(make_app()).commands  # type: ignore[attr-defined]
    assert set(everything) == set(COMMANDS)
    for name, module in COMMANDS.items():
        assert module in MODULES
        alone = typer.main.get_command(make_app([module])).commands  # type: ignore[attr-defined]
        assert name in alone
