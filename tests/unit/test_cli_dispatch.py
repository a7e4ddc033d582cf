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


def test_lock_ends_through_the_quick_exit_and_other_commands_do_not(monkeypatch, capsys):
    import envlock.cli.main as cli

    class Ended(Exception):
        pass

    def end(code):
        raise Ended(code)

    monkeypatch.setattr(cli, "_exit_now", end)
    monkeypatch.setenv("ENVLOCK_NO_PREFETCH", "1")
    monkeypatch.setattr("sys.argv", ["envlock", "lock", "--help"])
    with pytest.raises(Ended) as ended:
        cli.run()
    assert ended.value.args == (0,)
    monkeypatch.setattr("sys.argv", ["envlock", "show", "--help"])
    with pytest.raises(SystemExit):
        cli.run()
    assert "show [OPTIONS]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, modules", [
    (["lock", "-o", "x"], ["lock"]), (["--version"], []), (["--version", "--help"], MODULES),
    (["--help"], MODULES), ([], MODULES), (["lok"], MODULES), (["export", "RUN"], ["archive"]),
])
def test_modules_to_register(argv, modules):
    from envlock.cli.main import modules_to_register

    assert list(modules_to_register(argv)) == list(modules)
