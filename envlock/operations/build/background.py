"""The Docker engine load after a push, in a process of its own (issue #25).

Once an image is pushed, loading it into the local engine serves only a later replay on
this host; it no longer stands between a capture and its result (``docker load`` of a
5 GB environment took a third of a cold capture). :func:`start` hands the load to a
detached ``python -m envlock.operations.build.background``, which reads what to load
(and the build's credentials, never on a command line) from its standard input and
loads it as the engine sink would, logging to ``$ENVLOCK_CACHE/oci/load.log``. A replay
that runs before the load ends pulls the pinned image from the registry instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from envlock.adapters import proc

if TYPE_CHECKING:
    from envlock.operations.build.pipeline import BuildOptions
    from envlock.operations.build.sinks import Built


def start(built: Built, options: BuildOptions, target: Any) -> Path:
    """Start loading ``built``'s images into the engine in the background; the log."""
    recipe = built.recipe
    job = {"store": str(built.store.root), "base": recipe.base,
           "env": [recipe.env_image, built.env.digest],
           "code": None if built.image is built.env else [recipe.code_image,
                                                          built.image.digest],
           "env_reused": built.env_reused, "target": target.name if target else None,
           "registry": options.registry, "auth": options.auth}
    log: Path = built.store.root / "load.log"
    with log.open("ab") as handle:
        proc.background([sys.executable, "-m", "envlock.operations.build.background"],
                        handle, stdin=json.dumps(job).encode())
    return log


def load(job: dict[str, Any]) -> None:
    """Load the images ``job`` names from the store into the engine (see :func:`start`)."""
    from envlock.adapters.engine import Engine
    from envlock.adapters.ocistore import Store
    from envlock.image import oci
    from envlock.operations.build import assemble
    from envlock.operations.build.pipeline import BuildOptions
    from envlock.operations.build.sinks import EngineSink
    from envlock.progress import Reporter

    store = Store(Path(job["store"]))
    env = assemble.stored(store, *job["env"])
    image = assemble.stored(store, *job["code"]) if job["code"] else env
    if env is None or image is None:
        raise SystemExit("envlock: the images to load are gone from the store")
    recipe = SimpleNamespace(base=job["base"], env_image=job["env"][0],
                             code_image=(job["code"] or job["env"])[0])
    built = SimpleNamespace(env=env, image=image, recipe=recipe, store=store,
                            env_reused=job["env_reused"],
                            report=Reporter("envlock background load", live=False))
    options = BuildOptions(registry=job["registry"], auth=job["auth"], builder="docker")
    target = oci.parse_reference(job["target"]) if job["target"] else None
    sink = EngineSink(Engine.connect(), options, target)
    sink.load(built)  # type: ignore[arg-type]
    built.report.step(f"loaded {recipe.code_image} into the engine")


if __name__ == "__main__":  # pragma: no cover - run by start(), in its own process
    load(json.loads(sys.stdin.read()))
