"""The live one-node Slurm for the tests (``scripts/slurm``), as a fixture uses it.

``ensure()`` runs ``scripts/slurm/start.sh`` (root; idempotent: about a second when the
node is up already, which ``scripts/test.sh`` arranges in the background at its start;
installs Debian's packages the first time) and returns whether it was already up, so the
session that started it stops it (``stop()``) and one that found it running leaves it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "slurm"
SLURM_DIR = Path(os.environ.get("SLURM_DIR", "/var/tmp/envlock-slurm"))


class SlurmUnavailable(RuntimeError):
    """The test cluster could not be started; the message says why."""


def _script(name: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS / name)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "SLURM_DIR": str(SLURM_DIR)},
                          stdin=subprocess.DEVNULL)


def ensure() -> bool:
    """Start the cluster unless it is up; True when it was up already."""
    started = _script("start.sh", timeout=900)
    if started.returncode != 0:
        raise SlurmUnavailable(f"scripts/slurm/start.sh failed:\n{started.stderr[-3000:]}")
    return "already up" in started.stderr


def stop() -> None:
    _script("stop.sh", timeout=120)


def queue() -> list[str]:
    """Every job still pending or running, one ``ID STATE`` line each."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True,
                         timeout=30, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]
