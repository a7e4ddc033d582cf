"""``envlock capture``: lock the environment of an MLflow run, build and push its image,
and record the lineage on the run.

Order matters: the lock is written locally first (kept if the tracking store is down),
then the image is built and pushed, then artifacts are uploaded, and the tags go on
last, ``envlock.image`` the very last: a failure part-way never leaves a run pointing
at an image that does not exist. The SBOM (:mod:`envlock.operations.sbom`) is pushed
next to the image before any artifact or tag, and goes in with the other artifacts.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envlock import __version__
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.errors import EnvlockError
from envlock.model import backend, lockfile, runrecord, uvlock
from envlock.model.lockfile import Lock
from envlock.operations import sbom

LOCAL_DIR = ".envlock/runs"


@dataclass
class CaptureResult:
    run_id: str
    picked: str
    lockfile: str
    env_digest: str
    lock_digest: str
    image: str | None = None
    built: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    sbom: dict[str, Any] | None = None
    #: What the content scan of the code withheld or kept (the lock's ``secret_scan``).
    secret_scan: dict[str, Any] | None = None
    #: What the user should know about the lock (a uv project disagreeing with uv.lock).
    warnings: list[str] = field(default_factory=list)
    #: The inputs pinned (envlock.operations.inputs.Pinned.to_dict()).
    inputs: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lineage_tags(lock: Lock, image: str | None, base: str | None,
                 env_image_id: str | None = None) -> dict[str, str]:
    torch = lock.frameworks.get("torch") or {}
    git = lock.git or {}
    tags = {
        runrecord.ENV_DIGEST: lock.env_digest,
        runrecord.LOCK_DIGEST: lock.lock_digest,
        runrecord.PYTHON: lock.python["version"],
        runrecord.TORCH: torch.get("version") or "none",
        runrecord.CUDA: torch.get("cuda") or "none",
        runrecord.DRIVER: lock.gpu.get("driver_version") or "none",
        runrecord.GIT_COMMIT: git.get("commit") or "none",
        runrecord.CODE_KIND: "git" if lock.git else "directory" if lock.code else "none",
        runrecord.DIRTY: "true" if git.get("dirty") else "false",
        runrecord.COMMAND: lock.runtime.get("command") or "",
        runrecord.VERSION: __version__,
    }
    if lock.inputs:
        copied = sum(1 for i in lock.inputs if i.carry == "copy")
        tags[runrecord.INPUTS_PINNED] = (f"{len(lock.inputs)} ({copied} copy, "
                                         f"{len(lock.inputs) - copied} reference)")
    if base:
        tags[runrecord.BASE_IMAGE] = base
    if env_image_id:  # reproducible: `build --from-run --no-cache` compares against it
        tags[runrecord.ENV_IMAGE_ID] = env_image_id
    if image:
        tags[runrecord.IMAGE] = image
    return tags


def artifact_files(lock: Lock, recipe: str | None, directory: Path) -> list[Path]:
    """The lockfile, the build recipe, the git diff and the untracked list (outside git:
    ``files.txt``, every packed file with its sha256), as files."""
    files = [lockfile.write(lock, directory / runrecord.LOCK_ARTIFACT)]
    if recipe:
        (directory / "Dockerfile").write_text(recipe)
        files.append(directory / "Dockerfile")
    git = lock.git or {}
    if text := git.get("diff"):
        diff = text.encode() if git.get("diff_encoding") != "base64" else base64.b64decode(text)
        (directory / "git.diff").write_bytes(diff)
        files.append(directory / "git.diff")
    untracked = "".join(f"{u.get('sha256', 'symlink')}  {u['path']}\n"
                        for u in git.get("untracked") or [])
    (directory / "untracked.txt").write_text(untracked)
    files.append(directory / "untracked.txt")
    if lock.code:
        packed = "".join(f"{f['sha256']}  {f['path']}\n" for f in lock.code.get("files") or [])
        (directory / "files.txt").write_text(packed)
        files.append(directory / "files.txt")
    return files


def _keep(lock: Lock, project: str | Path, name: str) -> Path:
    return lockfile.write(lock, Path(project).absolute() / LOCAL_DIR / name /
                          runrecord.LOCK_ARTIFACT)


def _discard(local: Path, project: Path) -> None:
    """Remove a kept lockfile and the folders made for it (up to the project)."""
    local.unlink(missing_ok=True)
    for folder in local.parents:
        if folder == project or project not in folder.parents:
            break
        try:
            folder.rmdir()  # only when empty: earlier runs' locks stay
        except OSError:
            break


@dataclass(frozen=True)
class CaptureRequest:
    """What to capture: ``envlock capture``'s flags, or the Python API's options.

    ``run_id``: the run; default ``MLFLOW_RUN_ID``, else the latest run of the active
    experiment. ``command``: the command that ran it (default: the one ``autolog`` recorded).
    ``code_max_size``: the cap for packing a project outside git (default: the config's).
    ``allow_files``: files kept although their content looks like a secret (false positives).
    """

    run_id: str | None = None
    python: str | None = None
    command: str | None = None
    project: str | Path = "."
    registry: str | None = None
    base_image: str | None = None
    build: bool = True
    push: bool = True
    env_allow: Iterable[str] = ()
    code_max_size: str | None = None
    builder: str = "auto"
    auth: dict[str, str] | None = None
    allow_files: tuple[str, ...] = ()
    #: Files and directories the run read (``--input``), besides the config's ``inputs``.
    inputs: tuple[str, ...] = ()
    #: What ``envlock.autolog``'s audit hook saw the run read (``inputs-read.json``).
    reads: dict[str, Any] | None = None


#: capture()'s keywords that are not part of the request: what it works with.
COLLABORATORS = ("tracker", "engine", "reporter", "registries", "audit")


def request_from(run_id: str | None, options: dict[str, Any]
                 ) -> tuple[CaptureRequest, dict[str, Any]]:
    """The Python API's ``capture(run_id, **options)`` as a request and the keywords for
    :func:`capture` (an unknown option is a TypeError, as for any call)."""
    fields = {k: v for k, v in options.items() if k not in COLLABORATORS}
    return CaptureRequest(run_id, **fields), \
        {k: v for k, v in options.items() if k in COLLABORATORS}


def capture(request: CaptureRequest, *, tracker: TrackerLike | None = None,
            engine: EngineLike | None = None, reporter: Any = None, registries: Any = None,
            audit: Callable[[Lock], object] | None = None, lean_mlflow: bool = False
            ) -> CaptureResult:
    """Capture the environment of an MLflow run (see module docs). Returns what was recorded.

    ``audit``: a gate called with the lock before anything is written, built or recorded.
    ``lean_mlflow``: import MLflow without its pandas support (``tracking.preload``); only
    for a process that uses MLflow for nothing else (the CLI's).
    """
    from envlock import config

    project = request.project
    cfg = config.load(Path(project))
    cfg.apply_tracking_uri()
    warmed = None
    if tracker is None:  # MLflow imported meanwhile (seconds of a code-only capture)
        from envlock.adapters.tracking import preload

        warmed = preload(lean_mlflow)
    lock = _snapshot(request, cfg)
    if request.build:
        lock = _carry_interpreter(lock, request, cfg, reporter, registries)
    if audit is not None:
        audit(lock)
    if warmed is not None:
        warmed()  # one import at a time: the tracker below would wait for it anyway
    tracker, run, picked, local = _resolve(request, lock, tracker)
    if request.command is None and run.tags.get(runrecord.AUTOLOG_COMMAND):
        lock = lock.with_command(run.tags[runrecord.AUTOLOG_COMMAND])
    pinned = _pin_inputs(request, cfg, lock, run, tracker)
    lock = replace(lock, inputs=pinned.inputs)
    local = _keep(lock, project, run.run_id)
    result = CaptureResult(run_id=run.run_id, picked=picked, lockfile=str(local),
                           env_digest=lock.env_digest, lock_digest=lock.lock_digest,
                           secret_scan=(lock.git or lock.code or {}).get("secret_scan"),
                           warnings=[*uvlock.warnings(lock), *pinned.warnings])
    recipe = base = env_image_id = None
    if request.build:
        built = _build(lock, run, request, cfg, engine, reporter, registries)
        result.image, base, recipe = built.pinned, built.base, built.recipe
        env_image_id = built.env_image_id
        result.built = built.to_dict()
    result.tags = lineage_tags(lock, result.image, base, env_image_id)
    result.tags[backend.TAG] = backend.kind(tracker.uri)
    _push_inputs(pinned, result, request, reporter, registries)
    attached = _sbom(lock, run, result, base, reporter, request.auth, registries)
    try:
        _record(tracker, run.run_id, lock, recipe, attached, result)
    except EnvlockError as exc:
        exc.hint = (f"the lockfile is kept at {local}; retry with "
                    f"`envlock capture --run-id {run.run_id}` once the store is reachable")
        raise
    if reporter is not None and result.built:  # the capture's one summary line (issue #25)
        reporter.step(f"captured: {result.built['summary']}")
    return result


def _pin_inputs(request: CaptureRequest, cfg: Any, lock: Lock, run: Any,
                tracker: TrackerLike) -> Any:
    """The run's inputs, hashed and given a carry (copy needs a registry to push to)."""
    from envlock.operations import inputs

    can_copy = request.build and request.push and bool(cfg.get("registry", request.registry))
    datasets = getattr(tracker, "datasets", None)
    read, outputs = inputs.reads(request.reads, run, tracker)
    sources = inputs.Sources(
        declared=request.inputs, configured=cfg.get("inputs"),
        command=lock.runtime.get("command"), allow=request.allow_files,
        datasets=datasets(run.run_id) if datasets else (), started_ms=run.start_time,
        read=read, read_outputs=outputs)
    return inputs.pin(Path(request.project).absolute(), sources,
                      _copy_max(cfg.get("inputs_copy_max")), can_copy)


def _copy_max(value: Any) -> int:
    from envlock.model import sizes

    return 0 if str(value).strip() == "0" else sizes.parse(value, "inputs_copy_max")


def _push_inputs(pinned: Any, result: CaptureResult, request: CaptureRequest,
                 reporter: Any, registries: Any) -> None:
    """The copied inputs to the image's repository; their manifest pinned by a tag."""
    from envlock.operations import inputs

    copies = [i for i in pinned.inputs if i.carry == "copy"]
    if copies and result.image and "@sha256:" in result.image:
        if reporter is not None:
            reporter.step(f"pushing {len(copies)} input(s)")
        host = result.image.split("/", 1)[0]
        auth = request.auth
        inputs.push(pinned, result.image, Path(request.project).absolute(),
                    registries(host) if registries else inputs.registry_client(host, auth))
        if pinned.artifact:
            result.tags[inputs.TAG] = pinned.artifact
    result.inputs = pinned.to_dict()


def _snapshot(request: CaptureRequest, cfg: Any) -> Lock:
    from envlock.snapshot import snapshot

    env_allow = cfg.get("env_allow", list(request.env_allow))
    return snapshot(python=request.python, project=request.project, command=request.command,
                    env_allow=env_allow,
                    code_rules=cfg.code_rules(request.code_max_size, request.allow_files))


def _resolve(request: CaptureRequest, lock: Lock, tracker: TrackerLike | None
             ) -> tuple[TrackerLike, Any, str, Path]:
    """The tracker, the run and how it was picked, and the lock kept beside the project
    (kept even if the store is down; discarded when the store says there is no run)."""
    import os

    from envlock.adapters.tracking import StoreSchemaError, UnknownRun
    from envlock.operations.connect import open_tracker

    known = request.run_id or os.environ.get("MLFLOW_RUN_ID")
    local = _keep(lock, request.project, known or "latest")
    try:
        tracker = tracker or open_tracker()
        run, picked = tracker.resolve(request.run_id)
    except UnknownRun:  # the store answered: there is no such run, so no lock to keep
        _discard(local, Path(request.project).absolute())
        raise
    except EnvlockError as exc:
        retry = (f"the lockfile is kept at {local}; retry with `envlock capture"
                 f"{' --run-id ' + known if known else ''}`")
        exc.hint = (f"{exc.hint}; {retry} then" if isinstance(exc, StoreSchemaError)
                    else f"{retry} once the store is reachable")
        raise
    return tracker, run, picked, local


def _carry_interpreter(lock: Lock, request: CaptureRequest, cfg: Any, reporter: Any,
                       registries: Any) -> Lock:
    """The lock with its interpreter recorded as carried into the image when the base
    lacks its exact version and it is a tree envlock can carry (uv's, pyenv's)."""
    from envlock.adapters.ocistore import Store
    from envlock.image import render
    from envlock.operations.build import BuildOptions, interpreter
    from envlock.operations.build.environment import open_base
    from envlock.operations.build.stage import base_facts
    from envlock.progress import Silent

    if interpreter.candidate(lock) is None:
        return lock
    base_ref = render.choose_base(lock, cfg.base_image_for(lock.python["version"],
                                                           request.base_image))
    options = BuildOptions(registry=cfg.get("registry", request.registry), auth=request.auth)
    try:
        image = open_base(base_ref, options, registries)
        facts = base_facts(image, Store().root)
    except EnvlockError:  # the build names the unreadable base, after the lock is kept
        return lock
    return interpreter.plan(lock, facts.python, image.pinned, reporter or Silent())


def _build(lock: Lock, run: Any, request: CaptureRequest, cfg: Any,
           engine: EngineLike | None, reporter: Any, registries: Any) -> Any:
    """The run's image: built by ``operations.build``, created at the run's start."""
    from envlock.operations.build import BuildOptions, engine_for
    from envlock.operations.build import build as build_image

    options = BuildOptions(
        registry=cfg.get("registry", request.registry), push=request.push,
        code_dir=Path(request.project),
        base_image=cfg.base_image_for(lock.python["version"], request.base_image),
        run_id=run.run_id, extra_deny=tuple(cfg.get("deny")), created=run.started,
        builder=request.builder, auth=request.auth, allow_files=request.allow_files)
    return build_image(lock, options, engine or engine_for(request.builder), reporter,
                       registries=registries)


def _record(tracker: TrackerLike, run_id: str, lock: Lock, recipe: str | None,
            attached: sbom.Attached, result: CaptureResult) -> None:
    """The artifacts, then the tags, ``envlock.image`` the very last."""
    with tempfile.TemporaryDirectory(prefix="envlock-artifacts-") as tmp:
        artifact_files(lock, recipe, Path(tmp))
        (Path(tmp) / sbom.ARTIFACT).write_bytes(attached.document)
        tracker.log_artifacts(run_id, Path(tmp))
    image_tag = result.tags.pop(runrecord.IMAGE, None)
    tracker.set_tags(run_id, result.tags)
    if image_tag:
        tracker.set_tags(run_id, {runrecord.IMAGE: image_tag})
        result.tags[runrecord.IMAGE] = image_tag


def _sbom(lock: Lock, run: Any, result: CaptureResult, base: str | None, reporter: Any,
          auth: dict[str, str] | None, registries: Any) -> sbom.Attached:
    """The run's SBOM, pushed next to its image; its tag goes in with the others."""
    if reporter is not None:
        reporter.step("writing the SBOM" + (" and attaching it to the image"
                                            if result.image and "@" in result.image else ""))
    attached = sbom.for_capture(lock, run.run_id, run.started, result.image, base, auth,
                                registries)
    if attached.referrer:
        result.tags[runrecord.SBOM] = attached.referrer
    result.sbom = attached.to_dict()
    return attached
