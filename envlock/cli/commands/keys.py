"""``envlock keys generate DIR``: a key pair for signing image provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

from envlock.cli.options import JsonOpt

keys_app = typer.Typer(help="Key pairs that sign the provenance of envlock's images.",
                       no_args_is_help=True)


@keys_app.command("generate")
def generate_command(
    directory: Annotated[Path, typer.Argument(help="Where to write envlock.key (private, "
                                              "mode 0600) and envlock.pub.")],
    algorithm: Annotated[str, typer.Option(
        "--algorithm", help="ecdsa-p256 (cosign's default; `cosign verify-attestation "
        "--key envlock.pub` reads it) or ed25519.",
        click_type=click.Choice(["ecdsa-p256", "ed25519"]))] = "ecdsa-p256",
    as_json: JsonOpt = False,
) -> None:
    """Write a new key pair: DIR/envlock.key (private, mode 0600, never printed) and
    DIR/envlock.pub. Existing keys are never overwritten.

    Sign with ENVLOCK_SIGNING_KEY=DIR/envlock.key (or the config's signing_key); verify
    with ENVLOCK_VERIFY_KEY=DIR/envlock.pub (or the config's verify_key)."""
    from envlock.cli import output as out
    from envlock.operations import provenance

    out.begin("keys generate", as_json)
    private, public = provenance.generate(directory, algorithm)
    keyid = provenance.keyid(provenance.load_public(public))
    result = {"private_key": str(private), "public_key": str(public), "algorithm": algorithm,
              "keyid": keyid}
    human = (f"wrote {private} (private, mode 0600) and {public}\nkeyid {keyid}\n"
             f"sign:   export ENVLOCK_SIGNING_KEY={private}\n"
             f"verify: export ENVLOCK_VERIFY_KEY={public}")
    raise typer.Exit(out.emit(result, human))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
