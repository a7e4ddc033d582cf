"""``envlock build``: a lock (+ the code at its git state) -> a verified, digest-pinned image.

Two images per run, sharing layers:
* the environment image ``<repo>:env-<env_digest>``: base + one layer with every locked
  package; built once per env_digest and reused (locally or from the registry);
* the code image ``<repo>:<run-id>``: the environment image + one layer of code.
The engine is passed in (``Engine``), so orchestration is testable and the only
side effects live in ``engine/``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.adapters.engine import (
    STAGING_LABEL,
    ImageInfo,
    PushStats,
    registry_of,
    split_tag,
    tar_directory,
)
from envlock.adapters.engine.errors import BuildError, EngineError, RegistryError
from envlock.adapters.locking import exclusive
from envlock.adapters.protocols import EngineLike
from envlock.errors import UsageError
from envlock.image import render
from envlock.model.lockfile import Lock
from envlock.operations.code import code_context
from envlock.progress import Reporter, Silent


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
    auth: dict[str, str] | None = None
    #: When the image counts as created (RFC 3339). A run's image takes the run's start, so
    #: a rebuild from the run gives the same code image; None: now.
    created: str | None = None


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


def pin_base(engine: EngineLike, reference: str) -> str:
    """``reference`` as ``name@sha256:…``, present in the engine."""
    if "@sha256:" in reference:
        if engine.image(reference) is None:
            engine.pull(reference)
        return reference
    local = engine.image(reference)
    name = split_tag(reference)[0]
    if local is not None:
        digest = local.digest_in(name)
        if digest:
            return f"{name}@{digest}"
    try:
        digest = engine.registry_digest(reference)
    except RegistryError as exc:
        raise UsageError(f"cannot pin base image {reference} to a digest: {exc.message}",
                         "pass --base-image NAME@sha256:… with an image this engine can "
                         "pull") from exc
    if digest is None:
        raise UsageError(f"base image {reference} was not found in its registry",
                         "pass --base-image NAME@sha256:… with an image this engine can pull")
    pinned = f"{name}@{digest}"
    engine.pull(pinned)
    return pinned


def check_base_python(engine: EngineLike, base: str, lock: Lock) -> None:
    code, out = engine.run(base, ["python3", "-c",
                                  "import platform;print(platform.python_version())"],
                           stdout_only=True)
    version = out.decode(errors="replace").strip()
    wanted = lock.python["version"]
    if code != 0:
        raise UsageError(f"base image {base} has no working python3",
                         f"pass --base-image with Python {wanted} (e.g. python:{wanted}-slim)")
    if version != wanted:
        raise UsageError(f"base image {base} has Python {version}, the lock needs {wanted}",
                         f"pass --base-image with Python {wanted} (e.g. python:{wanted}-slim),"
                         f" or lock an environment made with Python {version}")


def verify_fidelity(engine: EngineLike, image_id: str, lock: Lock) -> dict[str, Any]:
    """Run the stdlib probe (with RECORD verification) in the image, compare with the lock."""
    from envlock.model.integrity import from_probe
    from envlock.snapshot.interpreter import PROBE_SOURCE
    from envlock.snapshot.packages import resolve

    code, out = engine.run(image_id, [f"{render.VENV}/bin/python", "-c",
                                      PROBE_SOURCE.read_text(), "--deep"],
                           user=f"{render.USER_ID}:{render.USER_ID}", stdout_only=True)
    if code != 0:
        raise BuildError(f"the fidelity probe failed in {image_id[:19]} (exit {code})")
    import json

    raw = json.loads(out)
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
    report = {"ok": not problems, "packages": len(lock.packages),
              "files_verified": integrity.files_checked, "problems": problems}
    if problems:
        raise BuildError(f"the image does not match the lock: {'; '.join(problems[:5])}"
                         f"{' …' if len(problems) > 5 else ''}",
                         "report this with the lockfile; the image was not tagged")
    return report


def _reuse_env(engine: EngineLike, recipe: render.Recipe, lock: Lock, registry: str | None,
               auth: dict[str, str] | None) -> tuple[ImageInfo | None, str | None]:
    local = engine.image(recipe.env_image)
    if local and local.labels.get("envlock.env_digest") == lock.env_digest:
        return local, "local"
    if registry and engine.registry_digest(recipe.env_image):
        pulled = engine.pull(recipe.env_image, auth)
        if pulled.labels.get("envlock.env_digest") == lock.env_digest:
            return pulled, "registry"
    return None, None


def build(lock: Lock, options: BuildOptions, engine: EngineLike,
          reporter: Reporter | None = None) -> BuildResult:
    report = reporter or Silent()
    timer = Timer()
    repository = render.repository_for(lock, options.registry)
    code_tag = render.default_code_tag(lock, options.run_id, options.tag)
    code = None
    if not options.env_only:
        with timer("code"):
            report.step("packing the code at the locked git state" if lock.git else
                        "packing the locked files of the project directory")
            code = code_context(lock, options.code_dir, options.extra_deny)
    base_ref = render.choose_base(lock, options.base_image)
    created = options.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

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
        env_info, env_reused = (None, None) if options.no_cache else \
            _reuse_env(engine, recipe, lock, options.registry, options.auth)
        if env_info is not None:
            base = env_info.labels.get("org.opencontainers.image.base.name", "") + "@" + \
                env_info.labels.get("org.opencontainers.image.base.digest", "")
            report.step(f"environment image {recipe.env_image} reused ({env_reused})")
            recipe = recipe_for(base)
        else:
            with timer("base"):
                report.step(f"pinning base image {base_ref}")
                base = pin_base(engine, base_ref)
                check_base_python(engine, base, lock)
            recipe = recipe_for(base)
            env_info, provisioned, fidelity = _build_env(engine, lock, recipe, options,
                                                         report, timer)
    if code is None:
        image, code_info, code_reused = recipe.env_image, env_info, False
    else:
        image = recipe.code_image
        code_info, code_reused = _code_image(engine, recipe, env_info, code, lock, report, timer,
                                             created)
    result = BuildResult(
        image=image, image_id=code_info.id, pinned=code_info.id, pushed=False,
        env_image=recipe.env_image, env_image_id=env_info.id, env_reused=env_reused,
        code_reused=code_reused, base=base, env_digest=lock.env_digest,
        lock_digest=lock.lock_digest, code_digest=code.digest if code else "",
        provisioned=provisioned,
        fidelity=fidelity, recipe=render.dockerfile(recipe))
    if options.registry and options.push:
        with timer("push"):
            _push(engine, recipe, result, options, report)
    result.timings = timer.times
    return result


def _build_env(engine: EngineLike, lock: Lock, recipe: render.Recipe, options: BuildOptions,
               report: Reporter, timer: Timer) -> tuple[ImageInfo, dict[str, str], Any]:
    from envlock.operations.provision import provision

    with tempfile.TemporaryDirectory(prefix="envlock-wheelhouse-") as tmp:
        wheelhouse = Path(tmp) / "wheelhouse"
        with timer("provision"):
            report.step(f"provisioning {len(lock.packages)} locked packages as wheels")
            provided = provision(lock, wheelhouse, use_cache=not options.no_cache,
                                 log=report.detail)
        with timer("env_layer"):
            report.step(f"installing them into the environment layer (base {recipe.base})")
            archive = tar_directory(wheelhouse, render.WHEELHOUSE.rsplit("/", 1)[1])
            staging_tag = "staging-" + recipe.env_tag
            try:
                image_id = engine.commit_after(
                    recipe.base, ["/bin/sh", "-c", recipe.install_command],
                    [(render.WHEELHOUSE.rsplit("/", 1)[0], archive)],
                    list(recipe.env_changes),
                    recipe.repository, staging_tag)
            except BaseException:  # an interrupt can land while the engine commits
                _forget(engine, f"{recipe.repository}:{staging_tag}")
                raise
            finally:
                archive.close()
    try:
        with timer("verify"):
            report.step("verifying the environment layer against the lock (versions, "
                        "files, RECORD hashes)")
            fidelity = verify_fidelity(engine, image_id, lock) if options.verify else None
        # Same layers, canonical config: the same lock on the same base gives this id again.
        image_id = engine.restate(
            image_id, created=render.CREATED, drop_labels=(STAGING_LABEL,),
            created_by=f"envlock: {len(lock.packages)} locked packages ({lock.env_digest})")
        engine.tag(image_id, recipe.repository, recipe.env_tag)
    finally:
        engine.remove(f"{recipe.repository}:{staging_tag}")
    info = engine.image(recipe.env_image)
    if info is None:
        raise EngineError(f"{recipe.env_image} vanished right after it was built")
    return info, {p.name: p.how for p in provided}, fidelity


def _code_image(engine: EngineLike, recipe: render.Recipe, env_info: ImageInfo, code: Any,
                lock: Lock, report: Reporter, timer: Timer, created: str
                ) -> tuple[ImageInfo, bool]:
    existing = engine.image(recipe.code_image)
    if existing and existing.labels.get("envlock.code_digest") == code.digest and \
            existing.labels.get("envlock.lock_digest") == lock.lock_digest and \
            existing.labels.get("envlock.env_digest") == lock.env_digest:
        report.step(f"code image {recipe.code_image} reused (same lock and code)")
        return existing, True
    with timer("code_layer"):
        report.step(f"adding the code layer ({code.files} files) → {recipe.code_image}")
        try:
            staged = engine.commit_after(env_info.id, ["true"], [("/", code.tar)],  # /workspace/…
                                         list(recipe.code_changes), recipe.repository,
                                         recipe.code_tag, run=False)
            # Canonical config as for the environment: same code, lock, run and time -> same id.
            image_id = engine.restate(staged, created=created, drop_labels=(STAGING_LABEL,),
                                      created_by=f"envlock: code {code.digest}")
            if image_id != staged:
                engine.tag(image_id, recipe.repository, recipe.code_tag)  # moves the tag
                engine.remove(staged)
        except BaseException:  # interrupted or failed: the tag claims no half-made image
            _forget(engine, f"{recipe.repository}:{recipe.code_tag}")
            raise
    info = engine.image(image_id)
    assert info is not None
    return info, False


def _forget(engine: EngineLike, reference: str) -> None:
    """Remove a tag this build made, on the way out of an error or an interrupt (whose
    report matters more than a failure to clean up)."""
    with contextlib.suppress(Exception):
        engine.remove(reference)


def _push(engine: EngineLike, recipe: render.Recipe, result: BuildResult, options: BuildOptions,
          report: Reporter) -> None:
    totals = PushStats()
    for reference in dict.fromkeys((recipe.env_image, result.image)):
        repository, tag = reference.rsplit(":", 1)
        local = engine.image(reference)
        assert local is not None
        remote = engine.registry_digest(reference)
        if remote and remote == local.digest_in(repository):
            report.step(f"{reference} already in the registry ({remote[:19]}…)")
            digest = remote
        else:
            report.step(f"pushing {reference}")
            stats = engine.push(repository, tag, options.auth,
                                on_event=lambda e: _push_detail(report, e))
            totals.layers_pushed += stats.layers_pushed
            totals.layers_existing += stats.layers_existing
            totals.bytes_pushed += stats.bytes_pushed
            digest = stats.digest or ""
        confirmed = engine.registry_digest(f"{repository}@{digest}") if digest else None
        if not confirmed:
            raise RegistryError(f"{reference} was pushed but registry {registry_of(reference)} "
                                "does not hold it", "retry the push")
        if reference == result.image:
            result.pinned = f"{repository}@{confirmed}"
    result.pushed = True
    result.push_stats = {"layers_pushed": totals.layers_pushed,
                         "layers_existing": totals.layers_existing,
                         "bytes_pushed": totals.bytes_pushed}


def _push_detail(report: Reporter, event: dict[str, Any]) -> None:
    if event.get("status") in ("Pushed", "Layer already exists"):
        report.detail(f"{event.get('id', '')}: {event['status']}")
