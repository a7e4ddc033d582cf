"""Where a built image goes: small strategy objects the pipeline hands its images to.

Every build assembles its images in envlock's local OCI store (``adapters.ocistore``);
the sinks then deliver them:

* :class:`EngineSink` loads them into a Docker engine (``--builder docker``, or ``auto``
  when an engine answers). With ``auto`` and a push the load runs after the push in a
  process of its own (``background``), off the build's path. The environment is proven
  inside the engine with ``--builder docker`` or ``$ENVLOCK_PROVE_IN_ENGINE=1``, or when
  the build could not prove it in the image's file system with an OCI runtime;
* :class:`RegistrySink` pushes the very bytes assembled through the registry client
  (with ``--registry``, unless ``--no-push``);
* :class:`StoreSink` leaves them in the local store when no other sink takes them.

``--builder`` (``$ENVLOCK_BUILDER``) is read in one place, :func:`choose`, which turns it
into sinks; the pipeline never looks at it. Archives (``envlock export``/``import``,
:mod:`envlock.operations.archive`) carry an image already pushed or loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.protocols import EngineLike
from envlock.errors import UsageError
from envlock.image import render
from envlock.model.lockfile import Lock
from envlock.progress import Reporter

if TYPE_CHECKING:
    from envlock.operations.build.pipeline import BuildOptions, BuildResult, Timer

#: What ``--builder`` accepts.
BUILDERS = ("auto", "docker", "oci")


@dataclass(frozen=True)
class Built:
    """The images one build assembled in the local store, as the sinks receive them."""

    lock: Lock
    recipe: render.Recipe
    store: Any  # adapters.ocistore.Store
    env: Any  # assemble.Assembled: the environment image
    image: Any  # the result: the code image, or ``env`` itself
    env_reused: str | None  # None (built) | "local" | "registry"
    report: Reporter
    timer: Timer


class Sink(Protocol):
    """Takes a build's images somewhere and records what it did on the result."""

    def deliver(self, built: Built, result: BuildResult) -> None: ...


class StoreSink:
    """The images stay in the local store, where they were assembled."""

    def deliver(self, built: Built, result: BuildResult) -> None:
        built.report.step(f"assembled in the local store {built.store.root} (no registry "
                          "to push to)")


@dataclass(frozen=True)
class EngineSink:
    """Both images in a Docker engine under their names, then the environment proven
    inside it (when the build verifies and built the environment)."""

    engine: EngineLike
    options: BuildOptions
    target: Any  # oci.Reference of --registry, or None
    prove: bool = True  # prove in the engine even when the build proved it without one
    background: bool = False  # load in a process of its own (after the push)

    def deliver(self, built: Built, result: BuildResult) -> None:
        if self.background:
            from envlock.operations.build import background

            log = background.start(built, self.options, self.target)
            built.report.step(f"loading {built.recipe.env_image} into the engine in the "
                              f"background (log: {log})")
            return
        result.builder = "docker"
        with built.timer("load"):
            self.load(built)
        from envlock.operations.build.stage import ROOTFS_PROOF

        proven = (result.fidelity or {}).get("where") == ROOTFS_PROOF
        if result.fidelity is not None and self.options.verify and \
                (self.prove or not proven):
            from envlock.operations.build.fidelity import verify_fidelity

            with built.timer("verify_image"):
                built.report.step("proving the environment inside the image (the engine "
                                  "runs the probe)")
                result.fidelity = {**verify_fidelity(self.engine, built.env.image_id,
                                                     built.lock),
                                   "staged": result.fidelity}

    def load(self, built: Built) -> None:
        """The environment image, then the code image, in the engine under their names."""
        self._load_env(built)
        self._load_code(built)

    def _load_env(self, built: Built) -> None:
        """The base (or, for an environment reused from the registry, the environment)
        pulled by digest, the rest loaded."""
        from envlock.operations.build import assemble
        from envlock.operations.build.environment import base_auth

        engine, env, recipe, report = self.engine, built.env, built.recipe, built.report
        if engine.image(env.image_id) is None:
            layers_here = all(built.store.has(d["digest"]) for d in env.layers[-1:])
            if built.env_reused == "registry" and self.target is not None and \
                    not layers_here:
                report.step(f"pulling {recipe.env_image} into the engine")
                engine.pull(f"{self.target.name}@{env.digest}", self.options.auth)
            else:
                if engine.image(recipe.base) is None:
                    report.step(f"pulling base image {recipe.base} into the engine")
                    engine.pull(recipe.base, base_auth(recipe.base, self.options))
                report.step(f"loading {recipe.env_image} into the engine")
                assemble.load(engine, env, built.store, [recipe.env_image])
        engine.tag(env.image_id, *recipe.env_image.rsplit(":", 1))

    def _load_code(self, built: Built) -> None:
        from envlock.operations.build import assemble

        image, recipe = built.image, built.recipe
        if image is built.env:
            return
        if self.engine.image(image.image_id) is None:
            built.report.step(f"loading {recipe.code_image} into the engine")
            assemble.load(self.engine, image, built.store, [recipe.code_image])
        self.engine.tag(image.image_id, *recipe.code_image.rsplit(":", 1))


@dataclass(frozen=True)
class RegistrySink:
    """The environment image (tag ``env-…``), then the code image, through the registry
    client: blobs the registry holds are skipped, the base's are mounted from its
    repository (or copied), the manifests are the very bytes assembled here."""

    target: Any  # oci.Reference
    registry: Any  # the registry client for target.registry
    connect: Any = None  # host -> registry client, for blobs copied from another registry

    def deliver(self, built: Built, result: BuildResult) -> None:
        from envlock.operations.build import assemble

        count = assemble.PushCount()
        image, recipe = built.image, built.recipe
        items = [(built.env, recipe.env_tag)] + \
            ([(image, recipe.code_tag)] if image is not built.env else [])
        with built.timer("push"):
            for item, tag in items:
                name = f"{self.target.name}:{tag}"
                if self._tagged(tag, item.digest):
                    built.report.step(f"{name} already in the registry ({item.digest[:19]}…)")
                    continue
                built.report.step(f"pushing {name}")
                assemble.push(item, self.target, tag, built.store, self.registry, count,
                              connect=self.connect)
        result.pinned = f"{self.target.name}@{image.digest}"
        result.pushed = True
        result.push_stats = {"layers_pushed": count.blobs_pushed,
                             "layers_existing": count.blobs_existing,
                             "layers_mounted": count.blobs_mounted,
                             "layers_copied": count.blobs_copied,
                             "bytes_pushed": count.bytes_pushed}

    def _tagged(self, tag: str, digest: str) -> bool:
        from envlock.image import oci

        try:
            data, _ = self.registry.manifest(self.target.repository, tag)
        except RegistryError:
            return False
        return oci.sha256_digest(data) == digest


def check_builder(builder: str, engine: EngineLike | None) -> None:
    """``--builder docker`` without an engine is a usage error, before anything is done."""
    if builder == "docker" and engine is None:
        raise UsageError("--builder docker needs a Docker engine and none answered",
                         "start one, or build without it: --builder oci")


def choose(options: BuildOptions, engine: EngineLike | None, target: Any, registry: Any,
           connect: Any = None) -> list[Sink]:
    """The sinks ``--builder``, ``--registry`` and ``--no-push`` ask for, in delivery
    order: an engine that proves the image first (before anything is pushed), then the
    registry, then an engine that only loads (in the background); the local store alone
    when neither takes the images."""
    import os

    prove = options.builder == "docker" or options.prove_in_engine or \
        os.environ.get("ENVLOCK_PROVE_IN_ENGINE", "").strip() in ("1", "true", "yes")
    pushing = target is not None and registry is not None and options.push
    sinks: list[Sink] = []
    if engine is not None and options.builder != "oci" and (prove or not pushing):
        sinks.append(EngineSink(engine, options, target, prove=prove))
    if pushing:
        sinks.append(RegistrySink(target, registry, connect))
    if engine is not None and options.builder != "oci" and pushing and not prove:
        sinks.append(EngineSink(engine, options, target, prove=False, background=True))
    return sinks or [StoreSink()]


def engine_for(builder: str) -> Any:
    """The Docker engine ``--builder`` wants: none for ``oci``; for ``auto`` the one that
    answers, else none (daemonless); for ``docker`` the one that must answer."""
    if builder == "oci":
        return None
    from envlock.adapters.engine import Engine
    from envlock.adapters.engine.errors import EngineError

    try:
        return Engine.connect()
    except EngineError:
        if builder == "docker":
            raise
        return None
