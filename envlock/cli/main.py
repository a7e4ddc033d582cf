"""Entry point: parse, dispatch, and turn every EnvlockError into one line and an exit code.

Exit codes: 0 ok; 1 a check failed (drift, differences, not reproduced);
2 bad input or an environment/infrastructure error; 130 SIGINT, 143 SIGTERM (after the
cleanups ran: both signals raise errors.Interrupted, a KeyboardInterrupt).
"""

from __future__ import annotations

import os
import sys

#: Commands whose process may end without the interpreter's teardown: they leave no
#: buffered file open and use no library that finishes its work at exit (MLflow does).
QUICK_EXIT = frozenset({"lock"})


def _prefetch_probe(argv: list[str]) -> None:
    """Start the interpreter probe of ``lock``/``check``, and the git queries of ``lock``,
    before the imports below run."""
    if not argv or argv[0] not in ("lock", "check") or {"-h", "--help", "--deep"} & set(argv):
        return
    if argv[0] in QUICK_EXIT:
        # A lock allocates little and ends through _exit_now: the cyclic collector's
        # passes over the objects typer's and click's imports create (~3.5 ms) free nothing.
        import gc

        gc.disable()
    from envlock.snapshot.interpreter import prefetch

    prefetch(_option(argv, "--python", "-p"))
    if argv[0] == "lock" and not {"--no-git", "--no-code"} & set(argv):
        from envlock.snapshot import git

        git.prefetch(_option(argv, "--project") or ".")


def _option(argv: list[str], *names: str) -> str | None:
    """The value of the last ``--name VALUE`` / ``--name=VALUE`` in ``argv``, or None."""
    value = None
    for index, arg in enumerate(argv):
        if arg in names and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(tuple(f"{name}=" for name in names)):
            value = arg.split("=", 1)[1]
    return value


if __name__ in ("__main__", "envlock.cli.main") and os.environ.get("ENVLOCK_NO_PREFETCH") != "1":
    _prefetch_probe(sys.argv[1:])

from collections.abc import Sequence  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    import typer

#: Modules under ``envlock.cli.commands``, in ``envlock --help`` order.
MODULES = ("lock", "show", "diff", "check", "audit", "build", "capture", "replay", "verify",
           "report", "config", "sbom", "pins", "provenance", "keys", "archive")
#: The module that registers each command.
COMMANDS = {**{name: name for name in MODULES[:-1]}, "lineage": "replay", "export": "archive",
            "import": "archive"}


def modules_to_register(argv: Sequence[str]) -> Sequence[str]:
    """The command modules ``argv`` needs: the invoked command's, none for a bare
    ``--version``, every one otherwise (``--help``, no command, an unknown command)."""
    module = command_module(argv)
    if module:
        return [module]
    if "--version" in argv and not {"-h", "--help"} & set(argv):
        return []
    return MODULES


def command_module(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` runs: its first argument that is not an option
    (the global options ``--debug``/``--version``/``--help`` take no value). None for
    ``envlock``, ``envlock --help`` or an unknown command."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return COMMANDS.get(first) if first else None


_APP: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """``app``: the whole CLI, built on first use (``run`` builds a leaner one); and
    ``make_app``, ``main``, ``HELP`` from ``envlock.cli.app`` (typer is imported then)."""
    global _APP
    if name in ("make_app", "main", "HELP"):
        from envlock.cli import app

        return getattr(app, name)
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _APP is None:
        from envlock.cli.app import make_app

        _APP = make_app()
    return _APP


def run() -> None:
    """Console-script entry: one error handler for the whole CLI."""
    # Freezing the heap before exit spares the final collection over MLflow's hundreds
    # of thousands of objects (~0.8 s per capture/replay).
    import atexit
    import gc

    atexit.register(gc.freeze)
    module = command_module(sys.argv[1:])
    try:
        _dispatch()
    except SystemExit as exc:
        if module in QUICK_EXIT and (exc.code is None or isinstance(exc.code, int)):
            _exit_now(exc.code or 0)
        raise




def _exit_now(code: int) -> None:
    """End the process without tearing the interpreter down (module teardown is ~12 ms of
    a ~150 ms ``envlock lock``): flush the streams, run the atexit handlers, exit."""
    import atexit

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def _dispatch() -> None:
    """Run the CLI, turning every EnvlockError (and OSError) into one line and an exit code."""
    from envlock.errors import EXIT_USAGE, EnvlockError

    _raise_on_signals()  # SIGTERM unwinds through the same cleanups as Ctrl-C
    try:
        _run_cli(sys.argv[1:])
    except EnvlockError as exc:
        from envlock.cli.output import emit_error

        if os.environ.get("ENVLOCK_DEBUG"):
            raise
        emit_error(type(exc).__name__, str(exc), exc.exit_code)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        sys.exit(_interrupted(exc))
    except SystemExit as exc:  # typer turns an interrupt into exit 130, whatever the signal
        interrupt = _interrupt_behind(exc)
        if interrupt is None:
            raise
        sys.exit(_interrupted(interrupt))
    except OSError as exc:
        from envlock.cli.output import emit_error

        if os.environ.get("ENVLOCK_DEBUG"):
            raise
        emit_error("OSError", f"{exc} (rerun with --debug for details)", EXIT_USAGE)
        sys.exit(EXIT_USAGE)


def _run_cli(argv: list[str]) -> None:
    """A plain ``envlock lock`` without typer (``cli.lockrun``: importing typer and click
    and building the command is a third of its start-up); any other command line through
    typer, with only the command modules it needs (typer inspects the signature of every
    registered command on each start: ~30 ms for all of them)."""
    plain = None
    if argv[:1] == ["lock"] and not any(k.startswith("_") and k.endswith("_COMPLETE")
                                        for k in os.environ):
        from envlock.cli.lockrun import parse

        plain = parse(argv)
    if plain is None:
        from envlock.cli.app import make_app

        make_app(modules_to_register(argv))()
        return
    from envlock.cli.lockrun import run_lock

    try:
        code = run_lock(plain)
    except BrokenPipeError:  # what click does when stdout's reader went away
        import click.utils

        pacify: Any = getattr(click.utils, "PacifyFlushWrapper")  # noqa: B009 - untyped
        sys.stdout, sys.stderr = pacify(sys.stdout), pacify(sys.stderr)
        sys.exit(1)
    sys.exit(code)


def _raise_on_signals() -> None:
    """SIGINT and SIGTERM raise errors.Interrupted; a signal this process was started
    ignoring (nohup, a background job) stays ignored."""
    import signal

    from envlock.errors import Interrupted

    def interrupt(signum: int, _frame: object) -> None:
        # A second SIGTERM (a runner repeating itself) must not cut the cleanups short;
        # a second Ctrl-C still interrupts them, as people expect.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum, signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, interrupt)


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt an exit was raised from, if any."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, KeyboardInterrupt):
        seen = seen.__cause__ or seen.__context__
    return seen


def _interrupted(exc: KeyboardInterrupt) -> int:
    """One line saying what was cut short and what it left; the exit code (128 + signal)."""
    from envlock.errors import Interrupted
    from envlock.progress import current_step

    if not isinstance(exc, Interrupted):  # raised before the handlers were installed
        exc = Interrupted(2, "SIGINT")
    step = current_step()
    where = f" while {step}" if step else ""
    sys.stderr.write(f"envlock: interrupted ({exc.name}){where}; {exc.outcome}\n")
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    run()
