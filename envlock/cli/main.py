"""Entry point: parse, dispatch, and turn every EnvlockError into one line and an exit code.

Exit codes: 0 ok; 1 a check failed (drift, differences, not reproduced);
2 bad input or an environment/infrastructure error; 130 SIGINT, 143 SIGTERM (after the
cleanups ran: both signals raise errors.Interrupted, a KeyboardInterrupt).
"""

from __future__ import annotations

import os
import sys


def _prefetch_probe(argv: list[str]) -> None:
    """Start the interpreter probe of ``lock``/``check`` before the imports below run."""
    if not argv or argv[0] not in ("lock", "check") or {"-h", "--help", "--deep"} & set(argv):
        return
    python = None
    for index, arg in enumerate(argv):
        if arg in ("--python", "-p") and index + 1 < len(argv):
            python = argv[index + 1]
        elif arg.startswith("--python="):
            python = arg.split("=", 1)[1]
    from envlock.snapshot.interpreter import prefetch

    prefetch(python)


if __name__ in ("__main__", "envlock.cli.main") and os.environ.get("ENVLOCK_NO_PREFETCH") != "1":
    _prefetch_probe(sys.argv[1:])

from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from envlock import __version__  # noqa: E402
from envlock.cli.commands import (  # noqa: E402
    archive,
    build,
    capture,
    check,
    config,
    diff,
    lock,
    replay,
    show,
    verify,
)

HELP = """Lock, containerize and replay the exact environment of an ML experiment.

Exit codes: 0 ok, 1 check failed (drift / differences), 2 bad input or environment error,
130/143 interrupted by SIGINT/SIGTERM.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envlock {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Log subprocesses and show "
                                        "tracebacks.", envvar="ENVLOCK_DEBUG")] = False,
) -> None:
    if debug:
        import logging

        os.environ["ENVLOCK_DEBUG"] = "1"
        logging.basicConfig(level=logging.DEBUG, format="envlock: %(name)s: %(message)s")


for module in (lock, show, diff, check, build, capture, replay, verify, config, archive):
    module.register(app)


def run() -> None:
    """Console-script entry: one error handler for the whole CLI."""
    # Freezing the heap before exit spares the final collection over MLflow's hundreds
    # of thousands of objects (~0.8 s per capture/replay).
    import atexit
    import gc

    from envlock.errors import EXIT_USAGE, EnvlockError

    atexit.register(gc.freeze)
    _raise_on_signals()  # SIGTERM unwinds through the same cleanups as Ctrl-C
    try:
        app()
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
