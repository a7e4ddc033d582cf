"""The orchestration invariants on in-memory fakes (tests/fakes.py), in milliseconds:
``envlock.image`` is set last; a replay run is never left RUNNING; an interrupted import
is cleaned up; an environment image is reused; the published recipe is what is committed.
The integration suite checks the same against Docker, a registry and MLflow."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.adapters.engine import Engine
from envlock.adapters.engine.errors import RegistryError
from envlock.adapters.protocols import EngineLike, TrackerLike
from envlock.adapters.tracking import Tracker, TrackingError
from envlock.errors import EnvlockError
from envlock.image import render
from envlock.model import lockfile
from envlock.model.lockfile import Lock
from envlock.model.runtree import RelayReport
from envlock.operations import archive
from envlock.operations.build import BuildOptions, build
from envlock.operations.capture import capture
from envlock.operations.replay import replay
from envlock.snapshot.directory import Rules, probe_directory
from tests.factories import make_lock
from tests.fakes import FakeEngine, FakeTracker
from tests.recipe_config import stages
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

    monkeypatch.setattr("envlock.operations.provision.provision", provision)
    monkeypatch.setenv("ENVLOCK_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("ENVLOCK_BASE_IMAGE", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return made


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

def test_a_first_build_makes_the_environment_then_the_code_image(tmp_path, engine, offline):
    lock = project(tmp_path / "p")
    result = build(lock, options(tmp_path / "p"), engine)
    assert result.env_reused is None and result.code_reused is False and len(offline) == 1
    env, code = engine.called("commit_after")
    assert env[0] == result.base and code[0] == result.env_image_id
    info = engine.image(result.image)
    assert info is not None and info.id == result.image_id
    assert info.labels["envlock.env_digest"] == lock.env_digest
    assert "envlock.staging" not in info.labels  # restated without the build's label
    assert engine.image(f"{result.env_image}".replace("env-", "staging-env-")) is None


def test_an_environment_image_already_present_is_reused_not_rebuilt(tmp_path, engine, offline):
    lock = project(tmp_path / "p")
    first = build(lock, options(tmp_path / "p"), engine)
    engine.calls.clear()
    again = build(lock, options(tmp_path / "p"), engine)
    assert again.env_reused == "local" and again.code_reused is True
    assert again.image_id == first.image_id and again.env_image_id == first.env_image_id
    assert not engine.called("commit_after") and not engine.called("pull")
    assert not engine.called("run") and len(offline) == 1  # no base check, no provisioning


def test_a_code_only_change_reuses_the_environment_image(tmp_path, engine, offline):
    first_lock = project(tmp_path / "p")
    first = build(first_lock, options(tmp_path / "p"), engine)
    changed = project(tmp_path / "p", "print('train harder')\n")
    assert changed.env_digest == first_lock.env_digest
    assert changed.lock_digest != first_lock.lock_digest
    engine.calls.clear()
    second = build(changed, options(tmp_path / "p"), engine)
    assert second.env_reused == "local" and second.code_reused is False
    assert second.env_image_id == first.env_image_id and second.image_id != first.image_id
    [(parent, *_)] = engine.called("commit_after")  # only the code layer, on the env image
    assert parent == first.env_image_id and len(offline) == 1


def test_an_environment_image_in_the_registry_is_pulled_not_rebuilt(tmp_path, engine, offline):
    lock = project(tmp_path / "p")
    env_image = render.render(lock, BASE, REGISTRY, "r1").env_image
    engine.publish(env_image, {"envlock.env_digest": lock.env_digest,
                               "org.opencontainers.image.base.name": "python",
                               "org.opencontainers.image.base.digest": "sha256:" + "b" * 64})
    result = build(lock, options(tmp_path / "p", registry=REGISTRY), engine)
    assert result.env_reused == "registry" and not offline
    assert [c[0] for c in engine.called("commit_after")] == [result.env_image_id]


def test_an_image_under_the_env_tag_with_another_env_digest_is_not_reused(tmp_path, engine):
    lock = project(tmp_path / "p")
    env_image = render.render(lock, BASE, render.repository_for(lock, None), "r1").env_image
    impostor = engine.add_image(env_image, {"envlock.env_digest": "sha256:" + "f" * 64})
    result = build(lock, options(tmp_path / "p"), engine)
    assert result.env_reused is None and result.env_image_id != impostor.id


# ---------------------------------------------------------------- the recipe

def test_the_published_recipe_holds_exactly_the_instructions_the_builder_commits(
        tmp_path, engine):
    lock = project(tmp_path / "p")
    result = build(lock, options(tmp_path / "p"), engine)
    env, code = engine.called("commit_after")
    text = stages(result.recipe)
    assert [line for line in text["env"] if not line.startswith(("USER root", "COPY", "RUN"))
            ] == list(env[3])
    assert [line for line in text["code"] if not line.startswith("COPY")] == list(code[3])
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
def captured(tmp_path, engine, monkeypatch):
    """A project, its lock (as the snapshot would take it), its environment image already
    built, and an MLflow run to capture."""
    root = tmp_path / "p"
    lock = project(root)
    monkeypatch.setattr("envlock.snapshot.snapshot", lambda **_: lock)
    build(lock, options(root, env_only=True, registry=REGISTRY, push=False), engine)
    tracker = FakeTracker()
    engine.calls.clear()
    return root, tracker, tracker.add_run(name="train")


def run_capture(captured, engine):
    root, tracker, run_id = captured
    return capture(run_id, project=root, registry=REGISTRY, tracker=tracker, engine=engine)


def test_capture_sets_envlock_image_last_to_a_pushed_image(captured, engine):
    _root, tracker, run_id = captured
    result = run_capture(captured, engine)
    order = tracker.tag_order(run_id)
    assert order[-1] == "envlock.image" and order.count("envlock.image") == 1
    assert "envlock.env_digest" in order and "envlock.lock_digest" in order
    image = tracker.runs[run_id].tags["envlock.image"]
    assert image == result.image and image.startswith(REGISTRY + "@sha256:")
    assert engine.registry_digest(image) is not None  # it points at what the registry holds
    names = [name for name, _ in tracker.calls]
    assert names.index("log_artifacts") < names.index("set_tags")
    assert {"envlock/envlock.lock.yaml", "envlock/Dockerfile"} <= set(
        tracker.runs[run_id].artifacts)


@pytest.mark.parametrize(("fake", "method", "error"), [
    ("engine", "push", RegistryError("registry refused the push")),
    ("tracker", "log_artifacts", TrackingError("tracking store is unreachable")),
    ("tracker", "set_tags", TrackingError("tracking store is unreachable")),
])
def test_a_failure_part_way_leaves_no_run_pointing_at_an_image(captured, engine, fake, method,
                                                               error):
    root, tracker, run_id = captured
    (engine if fake == "engine" else tracker).fail_on(method, error)
    with pytest.raises(EnvlockError):
        run_capture(captured, engine)
    assert "envlock.image" not in tracker.runs[run_id].tags
    assert (root / ".envlock/runs" / run_id / "envlock.lock.yaml").is_file()  # kept


def test_an_interrupt_during_the_push_records_nothing(captured, engine):
    _root, tracker, run_id = captured
    engine.fail_on("push", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_capture(captured, engine)
    assert not tracker.runs[run_id].tags and not tracker.runs[run_id].artifacts


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
    return replay(run_id, engine=engine, tracker=tracker, host={}, host_gpu={},
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
