"""The environment image: reused (this host's store, else the registry) or built from the
base, the provisioned wheels and the staged, verified environment layer."""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.adapters import proc
from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.locking import exclusive
from envlock.errors import UsageError
from envlock.image import render
from envlock.model import runrecord
from envlock.model.lockfile import Lock
from envlock.operations.build import interpreter
from envlock.operations.build.fidelity import check_probe

if TYPE_CHECKING:
    from envlock.operations.build.pipeline import BuildOptions, Job


@dataclass
class Environment:
    """The environment image of a build and how it came to be."""

    image: Any  # assemble.Assembled
    reused: str | None  # None (built) | "local" | "registry"
    base: str  # the base, pinned
    recipe: render.Recipe
    provisioned: dict[str, str] = field(default_factory=dict)  # package -> how
    fidelity: dict[str, Any] | None = None  # the staged tree's proof; None when reused
    #: wheel bytes: downloaded_bytes (over the network), reused_bytes (the wheel cache)
    transfer: dict[str, int] = field(default_factory=dict)


def environment(job: Job, recipe_for: Callable[[str], render.Recipe]) -> Environment:
    """One build of an environment at a time on this host (envlock.adapters.locking): a
    concurrent capture of the same environment waits, then reuses what this one built."""
    lock, report = job.lock, job.report
    base_ref = render.choose_base(lock, job.options.base_image)
    recipe = recipe_for(base_ref)  # tags and names do not depend on the base
    with exclusive(f"env-{lock.env_digest.split(':')[-1]}.lock", lambda: report.step(
            "waiting for another envlock that is building this same environment")):
        env, reused = (None, None) if job.options.no_cache else \
            reuse_env(job.store, recipe, lock, job.registry, job.target, base_ref)
        if env is not None:
            base = env.labels.get("org.opencontainers.image.base.name", "") + "@" + \
                env.labels.get("org.opencontainers.image.base.digest", "")
            report.step(f"environment image {recipe.env_image} reused ({reused})")
            return Environment(env, reused, base, recipe_for(base))
        with job.timer("base"):
            report.step(f"reading base image {base_ref} from its registry")
            base_image = open_base(base_ref, job.options, job.registries)
            from envlock.operations.build.stage import base_facts, check_python

            facts = base_facts(base_image, job.store.root)
            if interpreter.carried(lock):
                facts = interpreter.with_interpreter(facts, lock)
            check_python(facts, base_image.pinned, lock)
        recipe = recipe_for(base_image.pinned)
        env, provided, fidelity = build_env(job, recipe, base_image, facts)
    return Environment(env, None, base_image.pinned, recipe, {p.name: p.how for p in provided},
                       fidelity, transfer(provided))


def transfer(provided: list[Any]) -> dict[str, int]:
    """Bytes of wheels downloaded for this build, and of those the wheel cache held."""
    reused = sum(item.wheel.stat().st_size for item in provided
                 if item.how == "cache" and item.wheel.exists())
    return {"downloaded_bytes": sum(p.downloaded for p in provided), "reused_bytes": reused}


def open_base(reference: str, options: BuildOptions, registries: Any) -> Any:
    """The base image from its registry, pinned by digest (a UsageError when it cannot be
    read: the daemonless builder never pulls it through an engine)."""
    from envlock.adapters.imagefs import open_image

    host = reference.split("/", 1)[0]
    try:
        return open_image(reference, base_auth(reference, options),
                          registry=registries(host) if registries and "/" in reference
                          else None)
    except RegistryError as exc:
        raise UsageError(f"base image {reference} cannot be read from its registry: "
                         f"{exc.message}", "pass --base-image REGISTRY/NAME@sha256:… of an "
                         "image in a registry this host reaches") from exc


def base_auth(reference: str, options: BuildOptions) -> dict[str, str] | None:
    """The build's credentials serve the base too when it lives in the same registry."""
    if options.auth and options.registry and \
            reference.split("/", 1)[0] == options.registry.split("/", 1)[0]:
        return options.auth
    return None


def same_base(labels: dict[str, str], wanted: str) -> bool:
    """Was the image built on the base ``wanted`` names? A pinned reference must match name
    and digest; a tag (``python:3.11-slim``) matches the name, whatever its digest now."""
    from envlock.adapters.imagefs import qualified

    name, _, digest = wanted.partition("@")
    built_name = labels.get("org.opencontainers.image.base.name", "")
    if digest:
        return built_name == name and labels.get("org.opencontainers.image.base.digest") == digest
    head, colon, tail = name.rpartition(":")
    bare = head if colon and "/" not in tail else name
    return built_name in (bare, qualified(bare))


def reuse_env(store: Any, recipe: render.Recipe, lock: Lock, registry: Any,
              target: Any, base_ref: str) -> tuple[Any, str | None]:
    """The environment image built before on the same base: in the local store, else in
    the registry (an image of this env_digest on another base is not this build's)."""
    from envlock.image import oci
    from envlock.operations.build import assemble

    digest = store.lookup(recipe.env_image)
    env = assemble.stored(store, recipe.env_image, digest) if digest else None
    if env is not None and env.labels.get(runrecord.ENV_DIGEST) == lock.env_digest and \
            same_base(env.labels, base_ref):
        return env, "local"
    if registry is None:
        return None, None
    from envlock.adapters.imagefs import open_image

    try:
        found = open_image(f"{target.name}:{recipe.env_tag}", registry=registry)
    except RegistryError:
        return None, None
    env = assemble.Assembled(name=recipe.env_image, manifest_bytes=found.manifest_bytes,
                             config_bytes=found.config_bytes,
                             remote={d["digest"]: (target.registry, target.repository)
                                     for d in found.layers})
    if env.labels.get(runrecord.ENV_DIGEST) != lock.env_digest or \
            found.media_type != oci.OCI_MANIFEST or not same_base(env.labels, base_ref):
        return None, None
    store.put(found.config_bytes)
    store.put(found.manifest_bytes)
    assemble.remember(store, env)
    return env, "registry"


def build_env(job: Job, recipe: render.Recipe, base_image: Any, facts: Any
              ) -> tuple[Any, list[Any], Any]:
    """Provision and stage (each wheel installed as its download arrives), byte-compile
    (beside the installs), then write the layer while
    the fidelity probe checks the same staged tree in another process (in the base's
    file system, extracted meanwhile, when an OCI runtime is here)."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.operations.build import assemble

    lock = job.lock
    scratch: list[Path] = []
    done = False
    with ThreadPoolExecutor(1, thread_name_prefix="envlock-rootfs") as pool:
        rootfs = pool.submit(_base_rootfs, job, base_image)
        try:
            scratch.append(Path(tempfile.mkdtemp(prefix="envlock-build-")))
            python, members, root, provided = _stage(job, recipe, facts, scratch)
            carried = _carried_layer(job, rootfs)
            fidelity, layer = _verified_layer(job, root, facts, members, rootfs.result())
            done = True
        finally:
            for path in scratch:
                _discard(path, background=done)
    changes = recipe.env_changes if python else \
        (*recipe.env_changes, f'LABEL "{runrecord.LABEL_BYTECODE}"="none"')
    parent = assemble.from_base(base_image, recipe.base)
    if carried is not None:
        record = interpreter.carried(lock) or {}
        parent = assemble.child(parent, carried, [], recipe.env_image, job.store,
                                created=render.CREATED,
                                created_by=f"envlock: Python {lock.python['version']} "
                                           f"carried from {record['prefix']} "
                                           f"({record['digest']})")
    env = assemble.child(parent, layer, changes, recipe.env_image, job.store,
                         created=render.CREATED,
                         created_by=f"envlock: {len(lock.packages)} locked packages "
                                    f"({lock.env_digest})")
    assemble.remember(job.store, env)
    return env, provided, fidelity


def _carried_layer(job: Job, rootfs: Any) -> Any:
    """The lock's carried interpreter, checked against the lock and (``ldd`` in the base's
    file system) against the base, as its layer; None when the lock carries none."""
    if interpreter.carried(job.lock) is None:
        return None
    with job.timer("interpreter"):
        entries = interpreter.verified(job.lock)
        interpreter.check_libraries(rootfs.result(), job.lock, entries, job.report)
        job.report.step(f"writing the carried interpreter's layer ({len(entries)} entries)")
        return interpreter.layer(job.store, job.lock, entries)


def _base_rootfs(job: Job, base_image: Any) -> Path | None:
    """The base's file system for the daemon-free proof (extracted once per base digest);
    None when it is not wanted, there is no OCI runtime, or it cannot be had (the staged
    tree is then probed by envlock's own interpreter, and an engine proves the image)."""
    from envlock.adapters import ociruntime

    if not job.options.verify or ociruntime.runtime() is None:
        return None
    from envlock.adapters.imagefs import extract_rootfs

    record = interpreter.carried(job.lock)
    try:
        return extract_rootfs(base_image, job.store.root.parent,
                              [render.VENV, render.WORKDIR, "proc", "dev", "tmp",
                               *([record["prefix"]] if record else [])])
    except (OSError, RegistryError, tarfile.TarError) as exc:
        job.report.detail(f"the base's file system could not be extracted ({exc}): "
                          "the staged tree is probed by envlock's interpreter instead")
        return None


def _provision(job: Job, wheelhouse: Path, ready: Callable[[Any], None] | None = None
               ) -> Any:
    from envlock.operations.build import provision

    with job.timer("provision"):
        job.report.step(f"provisioning {len(job.lock.packages)} locked packages as wheels")
        return provision.provision(job.lock, wheelhouse, use_cache=not job.options.no_cache,
                                   log=job.report.detail, ready=ready)


def _stage(job: Job, recipe: render.Recipe, facts: Any, scratch: list[Path]
           ) -> tuple[str | None, Any, Path, list[Any]]:
    """The locked wheels provisioned into ``scratch[0]`` and installed into a staged tree
    (a new entry of ``scratch``), each as soon as it is verified when the size of the
    installed files is known beforehand (``stage.installed_size``: where to stage depends
    on it), byte-compiled beside the installs when this host has the lock's Python:
    (that Python, the members carried as they are, the tree's root, the wheels)."""
    from envlock.operations.build import stage

    lock, report = job.lock, job.report
    wheelhouse = scratch[0] / "wheelhouse"
    planned = stage.installed_size(lock)
    provided = None if planned is not None else _provision(job, wheelhouse)
    parent = stage.staging_parent(size=planned) if provided is None else \
        stage.staging_parent([p.wheel for p in provided])
    scratch.append(Path(tempfile.mkdtemp(prefix="envlock-build-", dir=parent)))
    root = scratch[-1] / "root"
    python = stage.bytecode_interpreter(lock)
    with ExitStack() as stack:
        compiler = stack.enter_context(stage.Compiler(python, root, lock)) if python else None
        installs = stack.enter_context(stage.Installs(lock, facts, root,
                                                      [p.name for p in lock.packages],
                                                      compiler))
        report.step(f"installing them into the staged environment (base {recipe.base}, "
                    f"under {parent}" + (", as each one arrives" if provided is None else "")
                    + (f", byte-compiling with {python} (Python {lock.python['version']})"
                       " beside it" if python else "") + ")")
        if provided is None:
            provided = _provision(job, wheelhouse, lambda p: installs.add(p.name, p.wheel))
        else:
            for item in provided:
                installs.add(item.name, item.wheel)
        with job.timer("install"):  # what is left to install after the last download
            members = installs.finish()
        with job.timer("bytecode"):
            if compiler is not None:
                compiler.finish()
            else:
                report.step(f"no Python {lock.python['version']} on this host: the "
                            "layer carries no byte-code (label envlock.bytecode=none)")
    return python, members, root, provided


def _verified_layer(job: Job, root: Path, facts: Any, members: Any, rootfs: Path | None
                    ) -> tuple[Any, Any]:
    """The environment layer, written while the fidelity probe (another process) checks
    the staged tree it is written from — in the base's file system under an OCI runtime
    when ``rootfs`` is given; the probe's verdict comes first."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.operations.build import assemble, stage

    lock, report, timer = job.lock, job.report, job.timer
    with ThreadPoolExecutor(1, thread_name_prefix="envlock-verify") as pool:
        probing = None
        if job.options.verify:
            report.step("verifying the staged environment against the lock (versions, "
                        "files, RECORD hashes" + (", in the image's file system with an OCI "
                                                  "runtime" if rootfs else "") +
                        ") while the environment layer is written")
            started = time.monotonic()
            record = interpreter.carried(lock)
            binds = [(Path(record["prefix"]), record["prefix"])] if record else []
            probing = pool.submit(stage.probe_in_rootfs, lock, root, rootfs, binds) if rootfs \
                else pool.submit(stage.probe_staged, lock, root)
            probing.add_done_callback(
                lambda _: timer.times.__setitem__("verify", round(time.monotonic() -
                                                                  started, 3)))
        else:
            report.step("writing the environment layer")
        try:
            with timer("env_layer"):
                layer = assemble.write_layer(job.store, lambda w: stage.fill_environment(
                    w, root, facts, members), "writing the environment layer")
        finally:
            raw = probing.result() if probing is not None else None
    where = stage.ROOTFS_PROOF if rootfs else "staged environment"
    fidelity = check_probe(raw, lock, where) if raw is not None else None
    return fidelity, layer


def _discard(tmp: Path, *, background: bool) -> None:
    """Remove a build's staged tree: after a success by a process of its own, so that
    deleting a gigabyte of files is not on the build's path; after a failure or an
    interrupt at once, so nothing is left behind."""
    import shutil

    if background:
        try:
            proc.detach(["rm", "-rf", "--", str(tmp)])
            return
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)
