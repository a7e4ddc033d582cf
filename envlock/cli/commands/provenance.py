"""``envlock provenance RUN_ID``: the verified provenance of a run's image; and the
``--require-signed`` check that replay and verify run before anything runs."""

from __future__ import annotations

from typing import Annotated

import typer

from envlock.cli.options import JsonOpt


def provenance_command(
    run_id: Annotated[str, typer.Argument(help="A captured MLflow run.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify and print the signed SLSA provenance of a run's image.

    The attestation is read from the image's registry, its DSSE signature checked with the
    verifying key ($ENVLOCK_VERIFY_KEY or the config's verify_key), and it must name
    the image's digest and the run's lock (lock_digest, env_digest). Prints the in-toto
    statement; exits 2 with what failed."""
    import json

    from envlock.cli import output as out
    from envlock.operations.provenance import check_run

    out.begin("provenance", as_json)
    verified, _ = check_run(run_id, require=True)
    assert verified is not None  # required: a failure raised
    human = (f"# {verified.image}: signature verified (key {verified.keyid}), names the "
             f"run's lock\n" + json.dumps(verified.statement, indent=2, sort_keys=True))
    raise typer.Exit(out.emit(verified.to_dict(), human))


def register(app: typer.Typer) -> None:
    app.command("provenance")(provenance_command)
