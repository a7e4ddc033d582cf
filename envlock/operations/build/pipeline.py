"""The build pipeline: pack the code, reuse or build the environment image, add the code
layer, then hand both images to the sinks (:mod:`envlock.operations.build.sinks`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.adapters.protocols import EngineLike
from envlock.errors import UsageError
from envlock.image import render
from envlock.model import runrecord
from envlock.model.lockfile import Lock
from envlock.operations import provenance
from envlock.operations.build import sinks
from envlock.operations.build.environment import Environment, environment
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
    #: Which sinks take the images (``sinks.choose``): auto: the Docker engine too when
    #: one answers; docker: require the engine; oci: never touch an engine (daemonless).
    builder: str = "auto"
    #: Prove the environment inside the Docker engine after loading it, as before issue
    #: #25 (``--builder docker`` does too; so does ``$ENVLOCK_PROVE_IN_ENGINE=1``); else
    #: the proof runs in the image's file system under an OCI runtime, with no engine.
    prove_in_engine: bool = False


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
    #: image_bytes, downloaded_bytes, reused_bytes (wheel cache), pushed_bytes
    transfer: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """One line: each phase's time, the image's size, bytes downloaded, reused, pushed."""
        from envlock.model.buildsummary import summary_line

        return summary_line(self.timings, self.transfer)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("recipe")
        out["summary"] = self.summary
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


@dataclass(frozen=True)
class Job:
    """One build: its inputs and what it works with."""

    lock: Lock
    options: BuildOptions
    report: Reporter
    timer: Timer
    store: Any  # adapters.ocistore.Store: where the images are assembled
    target: Any  # oci.Reference of --registry, or None
    registry: Any  # its registry client, or None
    registries: Registries | None


def build(lock: Lock, options: BuildOptions, engine: EngineLike | None,
          reporter: Reporter | None = None, *, registries: Registries | None = None
          ) -> BuildResult:
    """Assemble, verify and (with a registry) push the images of ``lock``. ``engine``:
    a Docker engine to load the images into and prove them in, or None (daemonless).
    ``registries``: host -> registry client (default: ``adapters.registry.Registry`` with
    the build's credentials or the Docker config's)."""
    sinks.check_builder(options.builder, engine)
    job = _job(lock, options, reporter or Silent(), registries)
    chosen = sinks.choose(options, engine, job.target, job.registry, registries)
    code = _pack_code(job) if not options.env_only else None
    created = options.created or inputs_time(lock, options.code_dir)
    repository = render.repository_for(lock, options.registry)
    code_tag = render.default_code_tag(lock, options.run_id, options.tag)

    def recipe_for(base: str) -> render.Recipe:
        return render.render(lock, base, repository, code_tag, run_id=options.run_id,
                             code_digest=code.digest if code else None, created=created)

    env = environment(job, recipe_for)
    image, code_reused = (env.image, False) if code is None else \
        _code_image(job, env, code, created)
    result = _result(job, env, image, code, code_reused)
    built = sinks.Built(lock=lock, recipe=env.recipe, store=job.store, env=env.image,
                        image=image, env_reused=env.reused, report=job.report,
                        timer=job.timer)
    for sink in chosen:
        sink.deliver(built, result)
    # signed provenance and SBOM beside a pushed image when a signing key is set (issue #27)
    result.provenance = provenance.attest_build(lock, result, options, registries, job.report)
    result.timings = job.timer.times
    result.transfer = {"image_bytes": sum(int(d.get("size", 0)) for d in image.layers),
                       **env.transfer,
                       "pushed_bytes": int(result.push_stats.get("bytes_pushed", 0))}
    return result


def _job(lock: Lock, options: BuildOptions, report: Reporter,
         registries: Registries | None) -> Job:
    from envlock.adapters.imagefs import registry_for
    from envlock.adapters.ocistore import Store

    store = Store()
    target = _target(render.repository_for(lock, options.registry)) \
        if options.registry else None
    registry = (registries(target.registry) if registries else registry_for(target, options.auth)
                ) if target else None
    return Job(lock=lock, options=options, report=report, timer=Timer(), store=store,
               target=target, registry=registry, registries=registries)


def _target(repository: str) -> Any:
    from envlock.image import oci

    try:
        return oci.parse_reference(repository)
    except ValueError as exc:
        raise UsageError(f"--registry {repository}: {exc}",
                         "pass HOST[:PORT]/REPOSITORY, e.g. registry.example.com/team/proj"
                         ) from exc


def _pack_code(job: Job) -> Any:
    lock, options, report = job.lock, job.options, job.report
    with job.timer("code"):
        report.step("packing the code at the locked git state" if lock.git else
                    "packing the locked files of the project directory")
        code = code_context(lock, options.code_dir, options.extra_deny, options.allow_files)
        for entry in (code.secret_scan or {}).get("withheld") or ():
            report.step(f"left {entry['path']} out of the code layer: its content looks "
                        f"like a secret ({entry['kind']})")
    return code


def inputs_time(lock: Lock, code_dir: Path | None) -> str:
    """When an image built without a run counts as created: ``SOURCE_DATE_EPOCH`` when set,
    else the locked commit's time, else 1980-01-01 — never the clock."""
    from envlock.operations.build.assemble import iso, source_date_epoch
    from envlock.operations.code import commit_time

    epoch = source_date_epoch()
    if epoch is None and lock.git:
        epoch = commit_time(lock, code_dir)
    return iso(epoch) if epoch is not None else render.CREATED


def _code_image(job: Job, env: Environment, code: Any, created: str) -> tuple[Any, bool]:
    """The environment image + one layer of code: the one built before from the same lock,
    code and time when the store has it."""
    from envlock.operations.build import assemble

    store, recipe, report = job.store, env.recipe, job.report
    digest = store.lookup(recipe.code_image)
    existing = assemble.stored(store, recipe.code_image, digest) if digest else None
    if existing is not None and existing.labels.get(runrecord.LABEL_CODE_DIGEST) == code.digest \
            and existing.labels.get(runrecord.LOCK_DIGEST) == job.lock.lock_digest \
            and existing.config.get("created") == created \
            and existing.layers[:-1] == env.image.layers:
        report.step(f"code image {recipe.code_image} reused (same lock and code)")
        return existing, True
    with job.timer("code_layer"):
        report.step(f"adding the code layer ({code.files} files) → {recipe.code_image}")
        layer = assemble.code_layer(store, code.tar)
        image = assemble.child(env.image, layer, recipe.code_changes, recipe.code_image,
                               store, created=created, created_by=f"envlock: code {code.digest}")
        assemble.remember(store, image)
    return image, False


def _result(job: Job, env: Environment, image: Any, code: Any, code_reused: bool
            ) -> BuildResult:
    """The result as the images stand in the local store; the sinks add what they did."""
    lock, recipe = job.lock, env.recipe
    withheld = (code.secret_scan or {}).get("withheld") or () if code else ()
    return BuildResult(
        image=recipe.env_image if code is None else recipe.code_image,
        image_id=image.image_id, pinned=image.image_id, pushed=False,
        env_image=recipe.env_image, env_image_id=env.image.image_id,
        env_reused=env.reused, code_reused=code_reused, base=env.base,
        env_digest=lock.env_digest, lock_digest=lock.lock_digest,
        code_digest=code.digest if code else "", provisioned=env.provisioned,
        fidelity=env.fidelity, recipe=render.dockerfile(recipe), builder="oci",
        manifest_digest=image.digest, secrets_withheld=list(withheld))
