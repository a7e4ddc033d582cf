"""The orchestration invariants on in-memory fakes (tests/fakes.py), in milliseconds:
``envlock.image`` is set last; a replay run is never left RUNNING; an interrupted import
is cleaned up; an environment image is reused; the published recipe is what is committed.
The integration suite checks the same against Docker, a registry and MLflow."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.adapters.engine import Engine
from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.tracking import Tracker, TrackingError
from envlock.config import Config
from envlock.errors import EnvlockError
from envlock.image import render
from envlock.model import lockfile
from envlock.model.lockfile import Lock
from envlock.model.runtree import RelayReport
from envlock.operations import archive, replayplan
from envlock.operations.build import BuildOptions, build
from envlock.operations.capture import CaptureRequest, capture
from envlock.operations.replay import replay
from envlock.operations.replayplan import ReplayRequest
from envlock.snapshot.directory import Rules, probe_directory
from tests.factories import make_lock
from tests.fakes import FakeEngine, FakeRegistry, FakeTracker, publish_base
from tests.recipe_config import config, stages
from tests.unit.test_archive import archive_files, write_tar

REGISTRY = "reg.example:5000/team/proj"
BASE = "python:3.11.7-slim-bookworm"  # render.choose_base for make_lock's Python and OS


# ---------------------------------------------------------------- set-up

@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No wheels are fetched (provision is the one step that needs the network) and the
    host-wide build lock lives in tmp_path."""
    made: list[Path] = []

    def provision(lock, wheelhouse, **_):
        wheelhouse.mkdir(parents=True)
        made.append(wheelhouse)
        return []

    monkeypatch.setattr("envlock.operations.build.provision.provision", provision)
    monkeypatch.setenv("ENVLOCK_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("ENVLOCK_OCI_RUNTIME", "none")  # the fake base is no file system
    monkeypatch.delenv("ENVLOCK_PROVE_IN_ENGINE", raising=False)
    monkeypatch.delenv("ENVLOCK_BASE_IMAGE", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return made


@pytest.fixture(autouse=True)
def background_loads(monkeypatch) -> list:
    """The images handed to a background engine load (no process is started)."""
    started: list = []
    monkeypatch.setattr("envlock.operations.build.background.start",
                        lambda built, options, target: started.append(built) or Path("log"))
    return started


def project(root: Path, train: str = "print('train')\n") -> Lock:
    """A project outside git and its lock (no GPU, so a replay needs none)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(train)
    code = probe_directory(root, Rules(), ())
    return make_lock(git=None, code=code, frameworks={},
                     gpu={"driver_version": None, "cuda_driver_version": None, "devices": []})


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.publish(BASE)
    return fake


def options(root: Path, **kw: object) -> BuildOptions:
    return BuildOptions(**{"code_dir": root, "verify": False, "run_id": "r1", **kw})  # type: ignore[arg-type]


# ---------------------------------------------------------------- the seams

@pytest.mark.parametrize(("protocol", "classes"), [(EngineLike, (Engine, FakeEngine)),
                                                   (TrackerLike, (Tracker, FakeTracker))])
def test_the_real_adapters_and_the_fakes_have_every_method_of_the_protocol(protocol, classes):
    """mypy checks the real ones where they are passed; this keeps the fakes in step."""
    for name, method in vars(protocol).items():
        if name.startswith("_") or not callable(method):
            continue
        wanted = list(inspect.signature(method).parameters)
        for cls in classes:
            assert list(inspect.signature(getattr(cls, name)).parameters) == wanted, \
                f"{cls.__name__}.{name}"


def test_the_protocols_import_nothing_heavy():
    code = ("import sys, envlock.adapters.protocols, envlock.operations.replay; "
            "print(sorted(m for m in ('docker', 'mlflow', 'kubernetes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- build: reuse

@pytest.fixture
def registry(tmp_path, monkeypatch) -> FakeRegistry:
    """The registry both the base and the pushed images live in; the local image store
    under tmp_path."""
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    fake = FakeRegistry(REGISTRY.split("/", 1)[0])
    monkeypatch.setenv("ENVLOCK_BASE_IMAGE", publish_base(fake))
    return fake


def built(lock: Lock, root: Path, engine: FakeEngine | None, fake: FakeRegistry,
          **kw: object):
    if engine is not None:
        engine.attach(fake)
    return build(lock, options(root, base_image=os.environ["ENVLOCK_BASE_IMAGE"], **kw),
                 engine, registries=lambda host: fake)


def test_a_first_build_makes_the_environment_then_the_code_image(tmp_path, engine, offline,
                                                                 registry):
    lock = project(tmp_path / "p")
    result = built(lock, tmp_path / "p", engine, registry)
    assert result.env_reused is None and result.code_reused is False and len(offline) == 1
    assert [c for c in engine.calls if c[0] == "load"] == [("load", ())] * 2  # env, code
    info = engine.image(result.image)
    assert info is not None and info.id == result.image_id
    assert info.labels["envlock.env_digest"] == lock.env_digest
    assert engine.image(result.env_image).id == result.env_image_id
    assert result.base == os.environ["ENVLOCK_BASE_IMAGE"]  # already pinned: kept


def test_an_environment_image_already_present_is_reused_not_rebuilt(tmp_path, engine, offline,
                                                                    registry):
    lock = project(tmp_path / "p")
    first = built(lock, tmp_path / "p", engine, registry)
    engine.calls.clear()
    again = built(lock, tmp_path / "p", engine, registry)
    assert again.env_reused == "local" and again.code_reused is True
    assert again.image_id == first.image_id and again.env_image_id == first.env_image_id
    assert not engine.called("load") and not engine.called("pull")
    assert not engine.called("run") and len(offline) == 1  # no base check, no provisioning


def test_a_code_only_change_reuses_the_environment_image(tmp_path, engine, offline, registry):
    first_lock = project(tmp_path / "p")
    first = built(first_lock, tmp_path / "p", engine, registry)
    changed = project(tmp_path / "p", "print('train harder')\n")
    assert changed.env_digest == first_lock.env_digest
    assert changed.lock_digest != first_lock.lock_digest
    engine.calls.clear()
    second = built(changed, tmp_path / "p", engine, registry)
    assert second.env_reused == "local" and second.code_reused is False
    assert second.env_image_id == first.env_image_id and second.image_id != first.image_id
    assert len(engine.called("load")) == 1 and len(offline) == 1  # only the code image


def test_an_environment_image_in_the_registry_is_reused_not_rebuilt(tmp_path, engine, offline,
                                                                    registry, monkeypatch):
    lock = project(tmp_path / "p")
    first = built(lock, tmp_path / "p", None, registry, registry=REGISTRY, builder="oci")
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "another-host"))  # an empty store
    result = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY,
                   builder="docker")
    assert result.env_reused == "registry" and len(offline) == 1
    assert result.env_image_id == first.env_image_id and result.pinned == first.pinned
    assert engine.called("pull") == [(f"{REGISTRY}@{_env_digest(registry, first)}", None)]


def test_with_a_push_the_engine_load_leaves_the_builds_path(tmp_path, engine, registry,
                                                           background_loads, monkeypatch):
    lock = project(tmp_path / "p")
    result = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY)
    assert result.pushed and engine.calls == []  # nothing loaded, pulled or run in it
    assert [b.image.image_id for b in background_loads] == [result.image_id]
    monkeypatch.setenv("ENVLOCK_PROVE_IN_ENGINE", "1")  # the flag: loaded and proven first
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "another-host"))
    again = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY)
    assert again.builder == "docker" and engine.called("load") and len(background_loads) == 1


def test_with_a_signing_key_the_pushed_image_gets_a_verifiable_provenance(
        tmp_path, offline, registry, monkeypatch):
    from envlock.model.provenance import Expected
    from envlock.operations import provenance

    private, public = provenance.generate(tmp_path / "keys")
    monkeypatch.setenv("ENVLOCK_SIGNING_KEY", str(private))
    lock = project(tmp_path / "p")
    local = built(lock, tmp_path / "p", None, registry, builder="oci")
    assert local.provenance == {"signed": False,
                                "reason": "the image was not pushed to a registry"}
    result = built(lock, tmp_path / "p", None, registry, registry=REGISTRY, builder="oci")
    assert result.provenance is not None and result.provenance["signed"] is True
    expected = Expected(result.pinned.partition("@")[2], lock.lock_digest, lock.env_digest)
    verified = provenance.verify_image(result.pinned, provenance.load_public(public),
                                       expected, registries=lambda host: registry)
    assert verified.parameters["base_image"] == result.base
    assert verified.sbom is not None
    again = built(lock, tmp_path / "p", None, registry, registry=REGISTRY, builder="oci")
    assert again.provenance == result.provenance  # the same bytes again: the same referrer
    monkeypatch.delenv("ENVLOCK_SIGNING_KEY")
    assert built(lock, tmp_path / "p", None, registry, registry=REGISTRY,
                 builder="oci").provenance is None


def _env_digest(registry: FakeRegistry, result) -> str:
    data, _ = registry.manifest(REGISTRY.split("/", 1)[1], result.env_image.rsplit(":", 1)[1])
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_same_lock_gives_the_same_digests_in_another_store_and_without_an_engine(
        tmp_path, engine, registry, monkeypatch):
    lock = project(tmp_path / "p")
    with_engine = built(lock, tmp_path / "p", engine, registry)
    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "elsewhere"))
    without = built(lock, tmp_path / "p", None, registry)
    assert (without.image_id, without.env_image_id) == \
        (with_engine.image_id, with_engine.env_image_id)
    assert without.builder == "oci" and with_engine.builder == "docker"


def test_an_image_under_the_env_tag_with_another_env_digest_is_not_reused(tmp_path, engine,
                                                                          registry):
    from envlock.adapters.ocistore import Store

    lock = project(tmp_path / "p")
    env_image = render.render(lock, BASE, render.repository_for(lock, None), "r1").env_image
    impostor = Store().put(b'{"config": {"Labels": {"envlock.env_digest": "sha256:f"}}}')
    Store().tag(env_image, impostor)
    result = built(lock, tmp_path / "p", engine, registry)
    assert result.env_reused is None and result.env_image_id != impostor


def test_builder_docker_without_an_engine_is_a_usage_error(tmp_path, registry):
    lock = project(tmp_path / "p")
    with pytest.raises(EnvlockError, match="--builder docker needs a Docker engine"):
        built(lock, tmp_path / "p", None, registry, builder="docker")


def test_builder_oci_never_touches_the_engine(tmp_path, engine, registry):
    lock = project(tmp_path / "p")
    result = built(lock, tmp_path / "p", engine, registry, builder="oci", registry=REGISTRY)
    assert engine.calls == [] and result.pushed and result.builder == "oci"


def test_pushing_mounts_the_base_layers_and_skips_what_the_registry_holds(tmp_path, engine,
                                                                         registry):
    lock = project(tmp_path / "p")
    first = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY)
    assert first.push_stats["layers_mounted"] == 1 and first.push_stats["layers_pushed"] == 2
    again = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY)
    assert again.push_stats["bytes_pushed"] == 0 and again.pinned == first.pinned


def test_a_registry_that_declines_mounts_gets_the_base_layers_copied(tmp_path, engine,
                                                                    registry):
    registry.mounts = False
    lock = project(tmp_path / "p")
    result = built(lock, tmp_path / "p", engine, registry, registry=REGISTRY)
    assert result.push_stats["layers_copied"] == 1 and result.push_stats["layers_mounted"] == 0
    assert registry.has_manifest(REGISTRY.split("/", 1)[1], result.pinned.split("@")[1])


def test_a_base_without_the_locks_python_is_refused_before_anything_is_built(
        tmp_path, engine, registry, offline):
    lock = project(tmp_path / "p")
    other = publish_base(registry, "library/python-old", python="3.10.4")
    with pytest.raises(EnvlockError, match="has Python 3.10.4, the lock needs 3.11.7"):
        build(lock, options(tmp_path / "p", base_image=other), engine,
              registries=lambda host: registry)
    assert not offline and not engine.calls


def test_an_unreadable_base_is_a_usage_error_naming_it(tmp_path, engine, registry):
    lock = project(tmp_path / "p")
    missing = f"{registry.host}/library/nothing:3.11"
    with pytest.raises(EnvlockError, match=f"base image {missing} cannot be read"):
        build(lock, options(tmp_path / "p", base_image=missing), engine,
              registries=lambda host: registry)


# ---------------------------------------------------------------- the recipe

def test_the_published_recipe_holds_exactly_the_instructions_the_image_carries(
        tmp_path, engine, registry):
    from envlock.adapters.ocistore import Store
    from envlock.operations.build.assemble import stored

    lock = project(tmp_path / "p")
    result = built(lock, tmp_path / "p", engine, registry)
    text = stages(result.recipe)
    store = Store()
    env = stored(store, result.env_image, store.lookup(result.env_image))
    code = stored(store, result.image, store.lookup(result.image))
    want_env = config([line for line in text["env"]
                       if not line.startswith(("USER root", "COPY", "RUN"))])
    want_code = config([line for line in text["env"] + text["code"]
                        if not line.startswith(("USER root", "COPY", "RUN"))])
    for image, want in ((env, want_env), (code, want_code)):
        got = image.config["config"]
        assert got["Labels"].items() >= want["Labels"].items()
        assert {k: v for k, v in (e.split("=", 1) for e in got["Env"])}.items() >= \
            want["Env"].items()
        assert (got["User"], got["WorkingDir"], got.get("Cmd")) == \
            (want["User"], want["WorkingDir"], want["Cmd"])
    assert f"FROM {result.base} AS env" in result.recipe


def test_render_is_pure_the_same_lock_gives_the_same_recipe(tmp_path):
    lock = project(tmp_path / "p")
    again = lockfile.load(lockfile.write(lock, tmp_path / "lock.yaml"))

    def recipe(one: Lock) -> render.Recipe:
        return render.render(one, BASE, REGISTRY, "r1", run_id="r1", code_digest="sha256:c",
                             created="2024-01-01T00:00:00Z")

    assert recipe(lock) == recipe(again)
    assert render.dockerfile(recipe(lock)) == render.dockerfile(recipe(again))


# ---------------------------------------------------------------- capture

@pytest.fixture
def captured(tmp_path, engine, registry, monkeypatch):
    """A project, its lock (as the snapshot would take it), its environment image already
    built, and an MLflow run to capture."""
    root = tmp_path / "p"
    lock = project(root)
    monkeypatch.setattr("envlock.snapshot.snapshot", lambda **_: lock)
    built(lock, root, engine, registry, env_only=True, registry=REGISTRY, push=False)
    tracker = FakeTracker()
    engine.calls.clear()
    return root, tracker, tracker.add_run(name="train"), registry


def run_capture(captured, engine):
    root, tracker, run_id, fake = captured
    return capture(CaptureRequest(run_id, project=root, registry=REGISTRY), tracker=tracker,
                   engine=engine, registries=lambda host: fake)


def test_capture_sets_envlock_image_last_to_a_pushed_image(captured, engine):
    _root, tracker, run_id, fake = captured
    result = run_capture(captured, engine)
    order = tracker.tag_order(run_id)
    assert order[-1] == "envlock.image" and order.count("envlock.image") == 1
    assert "envlock.env_digest" in order and "envlock.lock_digest" in order
    image = tracker.runs[run_id].tags["envlock.image"]
    assert image == result.image and image.startswith(REGISTRY + "@sha256:")
    assert fake.has_manifest(REGISTRY.split("/", 1)[1], image.split("@")[1])  # it is there
    names = [name for name, _ in tracker.calls]
    assert names.index("log_artifacts") < names.index("set_tags")
    assert {"envlock/envlock.lock.yaml", "envlock/Dockerfile"} <= set(
        tracker.runs[run_id].artifacts)


@pytest.mark.parametrize(("fake", "method", "error"), [
    ("registry", "put_manifest", RegistryError("registry refused the push")),
    ("tracker", "log_artifacts", TrackingError("tracking store is unreachable")),
    ("tracker", "set_tags", TrackingError("tracking store is unreachable")),
])
def test_a_failure_part_way_leaves_no_run_pointing_at_an_image(captured, engine, fake, method,
                                                               error):
    root, tracker, run_id, registry = captured
    (registry if fake == "registry" else tracker).fail_on(method, error)
    with pytest.raises(EnvlockError):
        run_capture(captured, engine)
    assert "envlock.image" not in tracker.runs[run_id].tags
    assert (root / ".envlock/runs" / run_id / "envlock.lock.yaml").is_file()  # kept


def test_an_interrupt_during_the_push_records_nothing(captured, engine):
    _root, tracker, run_id, registry = captured
    registry.fail_on("push_blob", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_capture(captured, engine)
    assert not tracker.runs[run_id].tags and not tracker.runs[run_id].artifacts


def test_capture_attaches_the_sbom_to_the_run_and_next_to_its_image(captured, engine,
                                                                     tmp_path, monkeypatch):
    import json

    from envlock.operations import sbom

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path / "cache"))
    _root, tracker, run_id, registry = captured
    result = run_capture(captured, engine)
    tags, digest = tracker.runs[run_id].tags, result.image.split("@")[1]
    document = tracker.runs[run_id].artifacts["envlock/sbom.cdx.json"]
    assert json.loads(document)["metadata"]["component"]["version"] == digest
    manifest = json.loads(registry.manifests[(REGISTRY.split("/", 1)[1],
                                              sbom.fallback_tag(digest))])
    assert manifest["subject"]["digest"] == digest
    assert registry.blobs[(REGISTRY.split("/", 1)[1], manifest["layers"][0]["digest"])] == \
        document
    assert tags["envlock.sbom"].startswith(REGISTRY + "@sha256:")
    order = tracker.tag_order(run_id)
    assert order.index("envlock.sbom") < order.index("envlock.image") == len(order) - 1
    assert result.sbom and "no dpkg or apk package database" in result.sbom["warnings"][0]


def test_a_registry_refusing_the_sbom_leaves_it_an_artifact_and_the_run_its_image(
        captured, engine, monkeypatch):
    from envlock.operations import sbom

    def refuse(*_args, **_kwargs):
        raise RegistryError("registry reg.example:5000 failed: HTTP 400 manifest invalid")

    monkeypatch.setattr(sbom, "push_referrer", refuse)
    _root, tracker, run_id, _registry = captured
    result = run_capture(captured, engine)
    tags = tracker.runs[run_id].tags
    assert "envlock.sbom" not in tags and tags["envlock.image"] == result.image
    assert "envlock/sbom.cdx.json" in tracker.runs[run_id].artifacts
    assert result.sbom and any("not attached to the image" in w
                               for w in result.sbom["warnings"])


# ---------------------------------------------------------------- replay

@pytest.fixture
def original(tmp_path, engine):
    """A captured run: its image in the engine, its lock as an artifact, one metric."""
    lock = project(tmp_path / "p")
    image = engine.add_image(f"{REGISTRY}:r1", {"envlock.env_digest": lock.env_digest})
    tracker = FakeTracker()
    data = lockfile.write(lock, tmp_path / "lock.yaml").read_bytes()
    run_id = tracker.add_run(name="train", tags={"envlock.image": image.id,
                                                "envlock.lock_digest": lock.lock_digest},
                             params={"seed": "0"}, metrics={"loss": 0.25},
                             artifacts={"envlock/envlock.lock.yaml": data})

    def relay(store: Path, replay_id: str) -> RelayReport:  # the experiment logged the same
        tracker.runs[replay_id].params.update(tracker.runs[run_id].params)
        tracker.runs[replay_id].history.update(tracker.runs[run_id].history)
        return RelayReport(runs=1, params=1, metric_points=1)

    tracker.relay = relay
    return tracker, run_id


def run_replay(original, engine):
    tracker, run_id = original
    spec, context = replayplan.local(ReplayRequest(run_id), tracker=tracker, config=Config(),
                                     host={}, host_gpu={})
    return replay(spec, engine=engine, tracker=tracker, context=context,
                  output=lambda chunk: None)


def replay_runs(tracker: FakeTracker, run_id: str) -> list[str]:
    return [r.status for r in tracker.runs.values() if r.tags.get("envlock.replay_of") == run_id]


def test_a_replay_that_reproduces_finishes_its_run(original, engine):
    tracker, run_id = original
    result = run_replay(original, engine)
    assert result.ok and result.comparison is not None and result.comparison.reproduced
    assert replay_runs(tracker, run_id) == ["FINISHED"]
    replayed = tracker.runs[str(result.replay_run_id)]
    assert replayed.tags["envlock.verdict"] == "reproduced"
    [(_image, _command, network)] = engine.called("run_experiment")
    assert network == "none"


def test_a_failing_container_fails_the_replay_run(original, engine):
    tracker, run_id = original
    engine.experiment = lambda image, env, binds: 3
    result = run_replay(original, engine)
    assert result.exit_code == 3 and replay_runs(tracker, run_id) == ["FAILED"]


@pytest.mark.parametrize(("fake", "method", "error"), [
    ("engine", "run_experiment", KeyboardInterrupt()),
    ("engine", "run_experiment", RegistryError("the engine went away")),
    ("tracker", "relay_file_store", TrackingError("tracking store is unreachable")),
    ("tracker", "run_tree", TrackingError("tracking store is unreachable")),
    ("tracker", "log_text", KeyboardInterrupt()),
])
def test_a_replay_run_is_never_left_running(original, engine, fake, method, error):
    tracker, run_id = original
    (engine if fake == "engine" else tracker).fail_on(method, error)
    with pytest.raises(type(error)):
        run_replay(original, engine)
    assert replay_runs(tracker, run_id) == ["FAILED"]


# ---------------------------------------------------------------- import

@pytest.fixture
def exported(tmp_path):
    return write_tar(tmp_path / "run.tar", archive_files())


def import_into(tracker, engine, path):
    return archive.import_archive(path, tracker=tracker, engine=engine)


def test_an_import_loads_the_image_and_sets_envlock_image_last(exported, engine):
    tracker = FakeTracker()
    result = import_into(tracker, engine, exported)
    [run] = tracker.active()
    assert run.run_id == result.run_id and run.status == "FINISHED"
    assert tracker.tag_order(run.run_id)[-1] == "envlock.image"
    assert run.tags["envlock.image"] == result.image == result.config_digest
    assert engine.image(result.image) is not None
    assert "envlock/envlock.lock.yaml" in run.artifacts
    again = import_into(tracker, engine, exported)
    assert again.reused and again.run_id == run.run_id and len(tracker.active()) == 1


@pytest.mark.parametrize("method", ["log_record", "log_artifacts", "finish", "set_tags"])
def test_an_import_interrupted_part_way_deletes_the_run_it_created(exported, engine, method):
    tracker = FakeTracker()
    tracker.fail_on(method, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        import_into(tracker, engine, exported)
    assert not tracker.active()
    assert [r.run_id for r in tracker.runs.values() if r.deleted] == \
        [args[0] for args in tracker.called("delete_run")]


def test_a_run_left_behind_by_a_killed_import_is_replaced_by_the_next(exported, engine):
    tracker = FakeTracker()
    tracker.fail_on("set_tags", KeyboardInterrupt())  # killed before envlock.image …
    tracker.fail_on("delete_run", TrackingError("store gone"))  # … and before its cleanup
    with pytest.raises(KeyboardInterrupt):
        import_into(tracker, engine, exported)
    [stale] = tracker.active()
    assert "envlock.image" not in stale.tags
    result = import_into(tracker, engine, exported)
    [run] = tracker.active()
    assert run.run_id == result.run_id != stale.run_id and not result.reused
    assert tracker.runs[stale.run_id].deleted and "envlock.image" in run.tags


def test_an_environment_built_on_another_base_is_not_reused(tmp_path, engine, registry,
                                                           offline):
    """Same lock, another --base-image (or the same base moved to another registry): the
    environment is built again on the base asked for, never taken from the old one."""
    lock = project(tmp_path / "p")
    first = built(lock, tmp_path / "p", engine, registry)
    other = publish_base(registry, "library/python-other")
    again = build(lock, options(tmp_path / "p", base_image=other), engine,
                  registries=lambda host: registry)
    assert again.env_reused is None and again.base == other and len(offline) == 2
    assert again.env_image_id != first.env_image_id


def test_same_base_matches_pins_exactly_and_tags_by_name():
    from envlock.operations.build import same_base

    labels = {"org.opencontainers.image.base.name": "registry-1.docker.io/library/python",
              "org.opencontainers.image.base.digest": "sha256:" + "a" * 64}
    assert same_base(labels, "python:3.11-slim")
    assert same_base(labels, "registry-1.docker.io/library/python@sha256:" + "a" * 64)
    assert not same_base(labels, "registry-1.docker.io/library/python@sha256:" + "b" * 64)
    assert not same_base(labels, "127.0.0.1:5000/library/python@sha256:" + "a" * 64)
    assert not same_base(labels, "nvidia/cuda:12.1.0-cudnn-runtime-ubuntu22.04")
