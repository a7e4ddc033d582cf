"""``envlock build``: a lock (+ the code at its git state) -> a verified, digest-pinned image.

Two images per run, sharing layers:
* the environment image ``<repo>:env-<env_digest>``: base + one layer with every locked
  package; built once per env_digest and reused (locally or from the registry);
* the code image ``<repo>:<run-id>``: the environment image + one layer of code.
Both are assembled by envlock itself, whichever sinks take them, so the same lock and
base give the same digest on any machine, with or without a Docker engine.

The package, by step:
* ``pipeline``: :func:`build` and its options and result: pack the code, get the
  environment image, add the code layer, hand the images to the sinks;
* ``environment``: the environment image reused, or built from ``provision`` (every
  locked package as a verified wheel on the host), ``stage`` (the wheels installed
  into a staged tree with ``wheelinstall``, byte-compiled) and ``fidelity`` (the staged
  tree, or the image, proven against the lock);
* ``assemble``: canonical layers, configs and manifests in the local store, pushed and
  loaded;
* ``sinks``: where the images go — the local store, a Docker engine (``docker load``,
  then the environment proven inside it), a registry (the assembled bytes pushed) —
  chosen once from ``--builder``, ``--registry`` and ``--no-push``.
"""

from envlock.operations.build.environment import same_base
from envlock.operations.build.fidelity import check_probe, verify_fidelity
from envlock.operations.build.pipeline import (
    BuildOptions,
    BuildResult,
    Registries,
    Timer,
    build,
    inputs_time,
)
from envlock.operations.build.sinks import engine_for

__all__ = ["BuildOptions", "BuildResult", "Registries", "Timer", "build", "check_probe",
           "engine_for", "inputs_time", "same_base", "verify_fidelity"]
