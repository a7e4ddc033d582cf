"""``envlock build``: a lock (+ the code at its git state) -> a verified, digest-pinned image.

Two images per run, sharing layers:
* the environment image ``<repo>:env-<env_digest>``: base + one layer with every locked
  package; built once per env_digest and reused (locally or from the registry);
* the code image ``<repo>:<run-id>``: the environment image + one layer of code.
Both are assembled by envlock itself (``operations.assemble``, ``operations.stage``):
the locked wheels installed on the host into a staged tree, canonical layers, configs
and manifests, so the same lock and base give the same digest on any machine, with or
without a Docker engine. An engine, when one is passed, receives the images (``docker
load``) and proves the environment inside them; pushing goes through the registry
client so that the registry holds exactly the assembled bytes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.adapters import proc
from envlock.adapters.engine.errors import BuildError, RegistryError
from envlock.adapters.locking import exclusive
from envlock.adapters.protocols import EngineLike
from envlock.errors import UsageError
from envlock.image import render
from envlock.model.lockfile import Lock
from envlock.operations import provenance
from envlock.operations.code import code_context
from envlock.progress import Reporter, Silent

#: host -> registry client (``adapters.registry.Registry`` or a test's fake)
Registries = Callable[[str], Any]


@dataclass(frozen=True)
class BuildOptions:
    registry: str | None = None  # HOST[:PORT]/REPO; None: local only
    push: bool = True
    base_image: str | None = None
    code_dir: Path | None = None
    tag: str | None = None
    run_id: str | None = None
    no_cache: bool = False
    verify: bool = True
    env_only: bool = False  # no code layer: the environment image is the result
    extra_deny: tuple[str, ...] = ()
    #: Files kept in the code layer although their content looks like a secret.
    allow_files: tuple[str, ...] = ()
    auth: dict[str, str] | None = None
    #: When the code image counts as created (RFC 3339). A run's image takes the run's
    #: start, so a rebuild from the run gives the same code image; None: from the inputs
    #: (SOURCE_DATE_EPOCH, else the locked commit's time), never the clock.
    created: str | None = None
    #: auto: load into the Docker engine and prove the image there when one answers;
    #: docker: require the engine; oci: never touch an engine (daemonless).
    builder: str = "auto"


@dataclass
class BuildResult:
    image: str  # repo:tag
    image_id: str
    pinned: str  # repo@sha256:… when pushed, else the local image id
    pushed: bool
    env_image: str
    env_image_id: str
    env_reused: str | None  # None (built) | "local" | "registry"
    code_reused: bool
    base: str
    env_digest: str
    lock_digest: str
    code_digest: str
    provisioned: dict[str, str] = field(default_factory=dict)  # package -> how
    fidelity: dict[str, Any] | None = None
    push_stats: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    recipe: str = ""
    builder: str = "oci"  # oci: assembled only; docker: also loaded into and proven in an engine
    manifest_digest: str = ""
    #: Files the code layer left out because their content looks like a secret (path, kind).
    secrets_withheld: list[dict[str, Any]] = field(default_factory=list)
    #: The signed provenance attached beside the image (issue #27); None: no signing key.
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("recipe")
        return out


class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> _Span:
        return _Span(self, name)


class _Span:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.timer.times[self.name] = round(self.timer.times.get(self.name, 0) + elapsed, 3)


def _open_base(reference: str, options: BuildOptions, registries: Registries | None) -> Any:
    """The base image from its registry, pinned by digest (a UsageError when it cannot be
    read: the daemonless builder never pulls it through an engine)."""
    from envlock.adapters.imagefs import open_image

    host = reference.split("/", 1)[0]
    try:
        return open_image(reference, _base_auth(reference, options),
                          registry=registries(host) if registries and "/" in reference
                          else None)
    except RegistryError as exc:
        raise UsageError(f"base image {reference} cannot be read from its registry: "
                         f"{exc.message}", "pass --base-image REGISTRY/NAME@sha256:… of an "
                         "image in a registry this host reaches") from exc


def _base_auth(reference: str, options: BuildOptions) -> dict[str, str] | None:
    """The build's credentials serve the base too when it lives in the same registry."""
    if options.auth and options.registry and \
            reference.split("/", 1)[0] == options.registry.split("/", 1)[0]:
        return options.auth
    return None


def check_probe(raw: dict[str, Any], lock: Lock, where: str) -> dict[str, Any]:
    """The fidelity proof: the probe's view of the image's venv against the lock (versions,
    files digests, RECORD hashes, nothing extra); a BuildError on any difference."""
    from envlock.model.integrity import from_probe
    from envlock.snapshot.packages import resolve

    venv_site = [d for d in raw["distributions"] if d["location"].startswith(render.VENV)]
    found = {p.name: p for p in resolve(venv_site, raw["python"].get("site_dirs", [])).packages}
    problems: list[str] = []
    for pkg in lock.packages:
        got = found.pop(pkg.name, None)
        if got is None:
            problems.append(f"{pkg.name}=={pkg.version} is missing")
        elif got.version != pkg.version:
            problems.append(f"{pkg.name}: {got.version} installed, {pkg.version} locked")
        elif pkg.files_digest and pkg.source.kind != "editable" and \
                got.files_digest != pkg.files_digest:
            problems.append(f"{pkg.name}=={pkg.version}: installed files differ from the lock")
    problems += [f"{name}=={p.version} is installed but not locked" for name, p in found.items()]
    integrity = from_probe(venv_site)
    problems += [f"{p.package}: {p.problem} {p.path}" for p in integrity.problems]
    if raw["python"]["version"] != lock.python["version"]:
        problems.append(f"Python {raw['python']['version']} in the image, "
                        f"{lock.python['version']} locked")
    if problems:
        raise BuildError(f"the {where} does not match the lock: {'; '.join(problems[:5])}"
                         f"{' …' if len(problems) > 5 else ''}",
                         "report this with the lockfile; nothing was tagged or pushed")
    return {"ok": True, "packages": len(lock.packages),
            "files_verified": integrity.files_checked, "problems": [], "where": where}


def verify_fidelity(engine: EngineLike, image_id: str, lock: Lock) -> dict[str, Any]:
    """Run the stdlib probe (with RECORD verification) in the image, compare with the lock."""
    import json

    from envlock.snapshot.interpreter import PROBE_SOURCE

    code, out = engine.run(image_id, [f"{render.VENV}/bin/python", "-c",
                                      PROBE_SOURCE.read_text(), "--deep"],
                           user=f"{render.USER_ID}:{render.USER_ID}", stdout_only=True)
    if code != 0:
        raise BuildError(f"the fidelity probe failed in {image_id[:19]} (exit {code})")
    return check_probe(json.loads(out), lock, "image")


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


def inputs_time(lock: Lock, code_dir: Path | None) -> str:
    """When an image built without a run counts as created: ``SOURCE_DATE_EPOCH`` when set,
    else the locked commit's time, else 1980-01-01 — never the clock."""
    from envlock.operations.assemble import iso, source_date_epoch
    from envlock.operations.code import commit_time

    epoch = source_date_epoch()
    if epoch is None and lock.git:
        epoch = commit_time(lock, code_dir)
    return iso(epoch) if epoch is not None else render.CREATED


def _target(repository: str) -> Any:
    from envlock.image import oci

    try:
        return oci.parse_reference(repository)
    except ValueError as exc:
        raise UsageError(f"--registry {repository}: {exc}",
                         "pass HOST[:PORT]/REPOSITORY, e.g. registry.example.com/team/proj"
                         ) from exc


def build(lock: Lock, options: BuildOptions, engine: EngineLike | None,
          reporter: Reporter | None = None, *, registries: Registries | None = None
          ) -> BuildResult:
    """Assemble, verify and (with a registry) push the images of ``lock``. ``engine``:
    a Docker engine to load the images into and prove them in, or None (daemonless).
    ``registries``: host -> registry client (default: ``adapters.registry.Registry`` with
    the build's credentials or the Docker config's)."""
    from envlock.adapters.imagefs import registry_for
    from envlock.adapters.ocistore import Store

    report = reporter or Silent()
    timer = Timer()
    if options.builder == "docker" and engine is None:
        raise UsageError("--builder docker needs a Docker engine and none answered",
                         "start one, or build without it: --builder oci")
    store = Store()
    repository = render.repository_for(lock, options.registry)
    code_tag = render.default_code_tag(lock, options.run_id, options.tag)
    target = _target(repository) if options.registry else None
    registry = (registries(target.registry) if registries else registry_for(target, options.auth)
                ) if target else None
    code = None
    if not options.env_only:
        with timer("code"):
            report.step("packing the code at the locked git state" if lock.git else
                        "packing the locked files of the project directory")
            code = code_context(lock, options.code_dir, options.extra_deny,
                                options.allow_files)
            for entry in (code.secret_scan or {}).get("withheld") or ():
                report.step(f"left {entry['path']} out of the code layer: its content looks "
                            f"like a secret ({entry['kind']})")
    base_ref = render.choose_base(lock, options.base_image)
    created = options.created or inputs_time(lock, options.code_dir)

    def recipe_for(base: str) -> render.Recipe:
        return render.render(lock, base, repository, code_tag, run_id=options.run_id,
                             code_digest=code.digest if code else None, created=created)

    recipe = recipe_for(base_ref)  # tags and names do not depend on the base
    provisioned: dict[str, str] = {}
    fidelity = None
    # One build of an environment at a time on this host (envlock.adapters.locking): a concurrent
    # capture of the same environment waits, then reuses what this one built.
    with exclusive(f"env-{lock.env_digest.split(':')[-1]}.lock", lambda: report.step(
            "waiting for another envlock that is building this same environment")):
        env, env_reused = (None, None) if options.no_cache else \
            _reuse_env(store, recipe, lock, registry, target, base_ref)
        if env is not None:
            base = env.labels.get("org.opencontainers.image.base.name", "") + "@" + \
                env.labels.get("org.opencontainers.image.base.digest", "")
            report.step(f"environment image {recipe.env_image} reused ({env_reused})")
            recipe = recipe_for(base)
        else:
            with timer("base"):
                report.step(f"reading base image {base_ref} from its registry")
                base_image = _open_base(base_ref, options, registries)
                base = base_image.pinned
                from envlock.operations.stage import base_facts, check_python

                facts = base_facts(base_image, store.root)
                check_python(facts, base, lock)
            recipe = recipe_for(base)
            env, provisioned, fidelity = _build_env(store, lock, recipe, base_image, facts,
                                                    options, report, timer)
    code_reused = False
    if code is None:
        image = env
    else:
        image, code_reused = _code_image(store, recipe, env, code, lock, report, timer,
                                         created)
    if engine is not None and options.builder != "oci":
        with timer("load"):
            _into_engine(engine, store, recipe, env, image, env_reused, registry, target,
                         options, report)
        if fidelity is not None and options.verify:
            with timer("verify_image"):
                report.step("proving the environment inside the image (the engine runs the "
                            "probe)")
                fidelity = {**verify_fidelity(engine, env.image_id, lock),
                            "staged": fidelity}
    result = BuildResult(
        image=recipe.env_image if code is None else recipe.code_image, image_id=image.image_id,
        pinned=image.image_id, pushed=False, env_image=recipe.env_image,
        env_image_id=env.image_id, env_reused=env_reused, code_reused=code_reused, base=base,
        env_digest=lock.env_digest, lock_digest=lock.lock_digest,
        code_digest=code.digest if code else "", provisioned=provisioned,
        fidelity=fidelity, recipe=render.dockerfile(recipe),
        secrets_withheld=list((code.secret_scan or {}).get("withheld") or ()) if code else [])
    result.builder = "oci" if engine is None or options.builder == "oci" else "docker"
    result.manifest_digest = image.digest
    if target is not None and registry is not None and options.push:
        with timer("push"):
            _push(store, recipe, env, image, target, registry, result, options, report,
                  registries)
    elif engine is None or options.builder == "oci":
        report.step(f"assembled in the local store {store.root} (no registry to push to)")
    # --- provenance hook (issue #27): sign + attach when a signing key is set ---
    result.provenance = provenance.attest_build(lock, result, options, registries, report)
    result.timings = timer.times
    return result


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


def _reuse_env(store: Any, recipe: render.Recipe, lock: Lock, registry: Any,
               target: Any, base_ref: str) -> tuple[Any, str | None]:
    """The environment image built before on the same base: in the local store, else in
    the registry (an image of this env_digest on another base is not this build's)."""
    from envlock.image import oci
    from envlock.operations import assemble

    digest = store.lookup(recipe.env_image)
    env = assemble.stored(store, recipe.env_image, digest) if digest else None
    if env is not None and env.labels.get("envlock.env_digest") == lock.env_digest and \
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
    if env.labels.get("envlock.env_digest") != lock.env_digest or \
            found.media_type != oci.OCI_MANIFEST or not same_base(env.labels, base_ref):
        return None, None
    store.put(found.config_bytes)
    store.put(found.manifest_bytes)
    assemble.remember(store, env)
    return env, "registry"


def _build_env(store: Any, lock: Lock, recipe: render.Recipe, base_image: Any, facts: Any,
               options: BuildOptions, report: Reporter, timer: Timer
               ) -> tuple[Any, dict[str, str], Any]:
    """Provision, stage, byte-compile (beside the installs), then write the layer while
    the fidelity probe checks the same staged tree in another process."""
    from envlock.operations import assemble, stage
    from envlock.operations.provision import provision

    scratch: list[Path] = []
    done = False
    try:
        scratch.append(Path(tempfile.mkdtemp(prefix="envlock-build-")))
        wheelhouse = scratch[0] / "wheelhouse"
        with timer("provision"):
            report.step(f"provisioning {len(lock.packages)} locked packages as wheels")
            provided = provision(lock, wheelhouse, use_cache=not options.no_cache,
                                 log=report.detail)
        wheels = [p.wheel for p in provided]
        scratch.append(Path(tempfile.mkdtemp(prefix="envlock-build-",
                                             dir=stage.staging_parent(wheels))))
        root = scratch[1] / "root"
        python = stage.bytecode_interpreter(lock)
        with ExitStack() as compiling:
            compiler = compiling.enter_context(stage.Compiler(python, root, lock)) \
                if python else None
            with timer("install"):
                report.step(f"installing them into the staged environment (base "
                            f"{recipe.base}, under {scratch[1].parent})" +
                            (f", byte-compiling with {python} (Python "
                             f"{lock.python['version']}) beside it" if python else ""))
                members = stage.stage(lock, wheels, facts, root, compiler)
            with timer("bytecode"):
                if compiler is not None:
                    compiler.finish()
                else:
                    report.step(f"no Python {lock.python['version']} on this host: the "
                                "layer carries no byte-code (label envlock.bytecode=none)")
        fidelity, layer = _verified_layer(store, lock, root, facts, members, options,
                                          report, timer)
        done = True
    finally:
        for path in scratch:
            _discard(path, background=done)
    changes = recipe.env_changes if python else \
        (*recipe.env_changes, 'LABEL "envlock.bytecode"="none"')
    parent = assemble.from_base(base_image, recipe.base)
    env = assemble.child(parent, layer, changes, recipe.env_image, store,
                         created=render.CREATED,
                         created_by=f"envlock: {len(lock.packages)} locked packages "
                                    f"({lock.env_digest})")
    assemble.remember(store, env)
    return env, {p.name: p.how for p in provided}, fidelity


def _verified_layer(store: Any, lock: Lock, root: Path, facts: Any, members: Any,
                    options: BuildOptions, report: Reporter, timer: Timer
                    ) -> tuple[Any, Any]:
    """The environment layer, written while the fidelity probe (another process) checks
    the staged tree it is written from; the probe's verdict comes first."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.operations import assemble, stage

    with ThreadPoolExecutor(1, thread_name_prefix="envlock-verify") as pool:
        probing = None
        if options.verify:
            report.step("verifying the staged environment against the lock (versions, "
                        "files, RECORD hashes) while the environment layer is written")
            started = time.monotonic()
            probing = pool.submit(stage.probe_staged, lock, root)
            probing.add_done_callback(
                lambda _: timer.times.__setitem__("verify", round(time.monotonic() -
                                                                  started, 3)))
        else:
            report.step("writing the environment layer")
        try:
            with timer("env_layer"):
                layer = assemble.write_layer(store, lambda w: stage.fill_environment(
                    w, root, facts, members))
        finally:
            raw = probing.result() if probing is not None else None
    fidelity = check_probe(raw, lock, "staged environment") if raw is not None else None
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


def _code_image(store: Any, recipe: render.Recipe, env: Any, code: Any, lock: Lock,
                report: Reporter, timer: Timer, created: str) -> tuple[Any, bool]:
    from envlock.operations import assemble

    digest = store.lookup(recipe.code_image)
    existing = assemble.stored(store, recipe.code_image, digest) if digest else None
    if existing is not None and existing.labels.get("envlock.code_digest") == code.digest \
            and existing.labels.get("envlock.lock_digest") == lock.lock_digest \
            and existing.config.get("created") == created \
            and existing.layers[:-1] == env.layers:
        report.step(f"code image {recipe.code_image} reused (same lock and code)")
        return existing, True
    with timer("code_layer"):
        report.step(f"adding the code layer ({code.files} files) → {recipe.code_image}")
        layer = assemble.code_layer(store, code.tar)
        image = assemble.child(env, layer, recipe.code_changes, recipe.code_image, store,
                               created=created, created_by=f"envlock: code {code.digest}")
        assemble.remember(store, image)
    return image, False


def _into_engine(engine: EngineLike, store: Any, recipe: render.Recipe, env: Any, image: Any,
                 env_reused: str | None, registry: Any, target: Any, options: BuildOptions,
                 report: Reporter) -> None:
    """Both images in the engine under their names: the base (or, for an environment
    reused from the registry, the environment) pulled by digest, the rest loaded."""
    from envlock.operations import assemble

    env_repo, env_tag = recipe.env_image.rsplit(":", 1)
    if engine.image(env.image_id) is None:
        layers_here = all(store.has(d["digest"]) for d in env.layers[-1:])
        if env_reused == "registry" and target is not None and not layers_here:
            report.step(f"pulling {recipe.env_image} into the engine")
            engine.pull(f"{target.name}@{env.digest}", options.auth)
        else:
            base = recipe.base
            if engine.image(base) is None:
                report.step(f"pulling base image {base} into the engine")
                engine.pull(base, _base_auth(base, options))
            report.step(f"loading {recipe.env_image} into the engine")
            assemble.load(engine, env, store, [recipe.env_image])
    engine.tag(env.image_id, env_repo, env_tag)
    if image is not env:
        code_repo, code_tag = recipe.code_image.rsplit(":", 1)
        if engine.image(image.image_id) is None:
            report.step(f"loading {recipe.code_image} into the engine")
            assemble.load(engine, image, store, [recipe.code_image])
        engine.tag(image.image_id, code_repo, code_tag)


def _push(store: Any, recipe: render.Recipe, env: Any, image: Any, target: Any,
          registry: Any, result: BuildResult, options: BuildOptions, report: Reporter,
          registries: Registries | None) -> None:
    """The environment image (tag ``env-…``), then the code image, through the registry
    client: blobs the registry holds are skipped, the base's are mounted from its
    repository (or copied), the manifests are the very bytes assembled here."""
    from envlock.operations import assemble

    count = assemble.PushCount()
    items = [(env, recipe.env_tag)] + ([(image, recipe.code_tag)] if image is not env else [])
    for item, tag in items:
        name = f"{target.name}:{tag}"
        if _tagged(registry, target, tag, item.digest):
            report.step(f"{name} already in the registry ({item.digest[:19]}…)")
            continue
        report.step(f"pushing {name}")
        assemble.push(item, target, tag, store, registry, count, connect=registries)
    result.pinned = f"{target.name}@{image.digest}"
    result.pushed = True
    result.push_stats = {"layers_pushed": count.blobs_pushed,
                         "layers_existing": count.blobs_existing,
                         "layers_mounted": count.blobs_mounted,
                         "layers_copied": count.blobs_copied,
                         "bytes_pushed": count.bytes_pushed}


def _tagged(registry: Any, target: Any, tag: str, digest: str) -> bool:
    from envlock.image import oci

    try:
        data, _ = registry.manifest(target.repository, tag)
    except RegistryError:
        return False
    return oci.sha256_digest(data) == digest


