"""One ReplaySpec, two renderings: docker-py's create arguments (checked by docker-py's own
conversion into the Engine API's body) and the Kubernetes Job (checked by the official
client's models) say the same about the same spec. Also: the option set of replay and verify
is the spec's, every container option has a config key, --timeout and its bookkeeping."""

from __future__ import annotations

import dataclasses
import math

import pytest
import typer

from envlock import config
from envlock.adapters import kube as kube_client
from envlock.cli import replayopts
from envlock.cli.main import make_app
from envlock.errors import EXIT_TIMEOUT, Interrupted, ReplayTimeout, UsageError
from envlock.model import kubejob
from envlock.model.replayspec import (
    HOSTNAME,
    ContainerFlags,
    GpuRequest,
    Mount,
    ReplaySpec,
    docker_args,
    parse_timeout,
)
from envlock.operations.replay import Tail, fail_replay
from envlock.operations.replayplan import BASE_ENV, ReplayRequest, with_config
from tests.fakes import FakeTracker

IMAGE = "registry.example.com/team/proj@sha256:" + "ab" * 32
RUN_ID = "0f3c9a1e2b7d4c56a8e9f0123456789a"

SPECS = {
    "default": ReplaySpec(run_id=RUN_ID, image=IMAGE, env=dict(BASE_ENV)),
    "everything": ReplaySpec(
        run_id=RUN_ID, image=IMAGE, command="torchrun --standalone --nproc_per_node 2 t.py",
        env={**BASE_ENV, "OMP_NUM_THREADS": "8", "SEED": "7"}, shm_size=8 << 30, cpus=1.5,
        memory=16 << 30, gpus=GpuRequest(count=2), timeout=1799.5),
    "bridge": ReplaySpec(run_id=RUN_ID, image=IMAGE, network="bridge", timeout=60),
}


def docker_body(spec: ReplaySpec) -> dict:
    """What docker-py would send to the engine for ``docker_args(spec)`` (its own code)."""
    from docker.models.containers import _create_container_args

    return _create_container_args({**docker_args(spec), "version": "1.41"})


def job(spec: ReplaySpec) -> dict:
    manifest = kubejob.job_manifest(kubejob.JobSpec(name="j", replay=spec,
                                                    tracking_uri="http://mlflow:5000"))
    import kubernetes.client  # ~0.4 s: imported by the tests that render a Job, not at collection

    api = kubernetes.client.ApiClient()
    assert api.sanitize_for_serialization(kube_client.to_model(api, manifest)) == manifest
    return manifest


@pytest.mark.parametrize("name", sorted(SPECS))
def test_both_renderings_say_the_same_about_one_spec(name):
    spec = SPECS[name]
    body, manifest = docker_body(spec), job(spec)
    host, pod = body["host_config"], manifest["spec"]["template"]["spec"]
    [main] = pod["containers"]
    security = main["securityContext"]
    # the same image, command, user and working directory
    assert body["image"] == main["image"] == IMAGE
    assert body["command"] == main.get("command") == spec.argv
    assert body["user"] == f"{security['runAsUser']}:{security['runAsGroup']}" == "1000:1000"
    assert body["working_dir"] == main["workingDir"] == "/workspace"
    # the same hardening
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert security["allowPrivilegeEscalation"] is False
    assert host["CapDrop"] == security["capabilities"]["drop"] == ["ALL"]
    assert host["ReadonlyRootfs"] is security["readOnlyRootFilesystem"] is True
    assert set(host["Tmpfs"]) == {m["mountPath"] for m in main["volumeMounts"]
                                  if m["name"] == "tmp"} == {"/tmp"}
    # the same environment (the Job adds where its MLflow logs)
    job_env = {e["name"]: e["value"] for e in main["env"]}
    assert {k: v for k, v in job_env.items() if not k.startswith("MLFLOW_")} == \
        dict(body["environment"]) == dict(spec.env)
    # the same resources
    assert host.get("ShmSize") == spec.shm_size
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]
    assert shm.get("sizeLimit") == (kubejob.quantity(spec.shm_size) if spec.shm_size else None)
    assert host.get("NanoCpus") == (int(spec.cpus * 1e9) if spec.cpus else None)
    assert host.get("Memory") == spec.memory
    limits = main.get("resources", {}).get("limits", {})
    assert limits.get("cpu") == (kubejob.cpu_quantity(spec.cpus) if spec.cpus else None)
    assert limits.get("memory") == (kubejob.quantity(spec.memory) if spec.memory else None)
    gpus = spec.gpus.count if spec.gpus else None
    assert [r["Count"] for r in host.get("DeviceRequests") or []] == ([gpus] if gpus else [])
    assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    # the same hostname, resolving to loopback; the Job's deadline is the timeout
    assert body["hostname"] == pod["hostname"] == HOSTNAME
    assert host["ExtraHosts"] == [f"{HOSTNAME}:127.0.0.1"]
    assert pod["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": [HOSTNAME]}]
    assert pod.get("activeDeadlineSeconds") == (math.ceil(spec.timeout) if spec.timeout
                                                else None)
    assert host["NetworkMode"] == spec.network


def test_the_workspace_is_a_volume_filled_from_the_image_and_mounts_are_binds():
    spec = dataclasses.replace(SPECS["default"], mounts=(Mount("/data", "/data", True),
                                                         Mount("/c", "/cache")))
    host = docker_body(spec)["host_config"]
    assert host["Mounts"] == [{"Target": "/workspace", "Source": None, "Type": "volume",
                               "ReadOnly": False}]
    assert host["Binds"] == ["/data:/data:ro", "/c:/cache:rw"]
    with pytest.raises(UsageError, match="only with --on local"):
        job(spec)  # a host's directories mean nothing on a cluster's node


def test_host_networks_keep_the_hosts_name_and_all_gpus_are_local_only():
    for network in ("host", "container:other"):
        args = docker_args(dataclasses.replace(SPECS["default"], network=network))
        assert "hostname" not in args and "extra_hosts" not in args  # the engine refuses them
    every = dataclasses.replace(SPECS["default"], gpus=GpuRequest(count=-1))
    assert docker_body(every)["host_config"]["DeviceRequests"][0]["Count"] == -1
    devices = dataclasses.replace(SPECS["default"], gpus=GpuRequest(ids=("0", "3")))
    assert docker_body(devices)["host_config"]["DeviceRequests"][0]["DeviceIDs"] == ["0", "3"]
    for spec in (every, devices):
        with pytest.raises(UsageError, match="number of GPUs"):
            job(spec)


@pytest.mark.parametrize("text, seconds", [("900", 900), ("1.5", 1.5), ("90s", 90),
                                           ("30m", 1800), ("2h", 7200), ("1d", 86400),
                                           ("none", None), ("0", None), (None, None)])
def test_timeouts_as_people_write_them(text, seconds):
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("text", ["forever", "-5", "5 weeks", "m"])
def test_bad_timeouts_are_one_line(text):
    with pytest.raises(UsageError, match="--timeout"):
        parse_timeout(text)


# ------------------------------------------------------------------ one option set

def command_options(name: str) -> dict[str, set[str]]:
    group = typer.main.get_command(make_app(["replay", "verify"]))
    return {p.name: set(p.opts) for p in group.commands[name].params}  # type: ignore[attr-defined]


def test_every_container_option_is_a_flag_of_replay_and_verify_and_a_config_key():
    names = {f.name for f in dataclasses.fields(ContainerFlags)}
    assert names <= {f.name for f in dataclasses.fields(ReplaySpec)}
    assert names == set(replayopts.CONTAINER_OPTIONS)
    assert names <= set(config.KEYS)
    replay, verify = command_options("replay"), command_options("verify")
    for name in (*names, *replayopts.COMPARISON_OPTIONS):
        assert name in replay and name in verify, name
        assert replay[name] == verify[name]
    assert replay["mounts"] == {"--mount"} and replay["timeout"] == {"--timeout"}


def test_both_commands_hand_every_container_option_to_the_replay(monkeypatch):
    from typer.testing import CliRunner

    from envlock.operations import replay as operation

    seen = []

    def replay_here(request, **kwargs):
        seen.append(request)
        raise typer.Exit(0)

    monkeypatch.setattr(operation, "replay_here", replay_here)
    monkeypatch.setattr("envlock.cli.commands.replay.engine_for_run", lambda *a: None)
    monkeypatch.setattr("envlock.cli.commands.verify.engine_for_run", lambda *a: None)
    monkeypatch.setattr("envlock.cli.commands.replay.open_tracker", lambda *a, **k: None)
    monkeypatch.setattr("envlock.cli.commands.verify.open_tracker", lambda *a, **k: None)
    args = ["--network", "bridge", "--env", "A=1", "--env", "B=2", "--mount", "/d:/d:ro",
            "--command", "python t.py", "--shm-size", "1g", "--cpus", "2", "--memory", "4g",
            "--gpus", "none", "--timeout", "30m", "--metric", "loss", "--tolerance", "1%"]
    app = make_app(["replay", "verify"])
    for command in ("replay", "verify"):
        result = CliRunner().invoke(app, [command, RUN_ID, *args])
        assert result.exit_code == 0, result.output
    assert seen[0] == seen[1] == ReplayRequest(RUN_ID, ContainerFlags(
        network="bridge", env=("A=1", "B=2"), mounts=("/d:/d:ro",), command="python t.py",
        shm_size="1g", cpus="2", memory="4g", gpus="none", timeout="30m"),
        tolerance="1%", metrics=("loss",))


def test_a_flag_wins_over_the_config_which_wins_over_the_default(tmp_path):
    path = tmp_path / "envlock.yaml"
    path.write_text("network: bridge\ntimeout: 1800\ncpus: 2.5\nmounts: /data:/data\n"
                    "env:\n  - A=1\n")
    settings = config.Config(path, config.parse(path))
    merged = with_config(ContainerFlags(timeout="5m", env=("B=2",)), settings)
    assert merged == ContainerFlags(network="bridge", env=("B=2",), mounts=("/data:/data",),
                                    cpus="2.5", timeout="5m")
    assert with_config(ContainerFlags(), config.Config()) == ContainerFlags(network="none")


@pytest.mark.parametrize("text, problem", [
    ("timeout: forever\n", "is not a duration"), ("cpus: lots\n", "number of CPUs"),
    ("gpus: many\n", "not understood"), ("mounts: [nodst]\n", "must look like"),
    ("env: [HF_TOKEN=hunter2]\n", "looks like a secret"), ("memory: huge\n", "not a size")])
def test_bad_container_settings_in_the_config_name_the_file(tmp_path, text, problem):
    path = tmp_path / "envlock.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=problem) as err:
        config.parse(path)
    assert str(path) in err.value.message and "hunter2" not in str(err.value)


# ------------------------------------------------------------------ a replay stopped

def test_a_timed_out_replay_run_is_failed_with_the_reason_and_what_it_waited_on():
    tracker = FakeTracker()
    run_id = tracker.add_run()
    tail = Tail(lines=2)
    tail.tee(lambda chunk: None)(b"step 1\nrendezvous: waiting for rank 1\n\n" + b"x" * 20)
    error = ReplayTimeout(30)
    fail_replay(tracker, run_id, error, tail)
    assert error.exit_code == EXIT_TIMEOUT == 124
    assert error.message.endswith("its last output lines: rendezvous: waiting for rank 1 | "
                                  + "x" * 20)
    tags = tracker.runs[run_id].tags
    assert tracker.runs[run_id].status == "FAILED" and tags["envlock.verdict"] == "timed out"
    assert tags["envlock.failure"] == error.message


def test_an_interrupted_replay_says_what_it_was_waiting_on():
    tracker = FakeTracker()
    run_id = tracker.add_run()
    tail = Tail()
    tail.tee(lambda chunk: None)(b"c10d: waiting for the store")
    stop = Interrupted(15, "SIGTERM")
    fail_replay(tracker, run_id, stop, tail)
    assert stop.outcome == (f"replay run {run_id} was marked FAILED; it was waiting on: "
                            "c10d: waiting for the store")
    assert "envlock.verdict" not in tracker.runs[run_id].tags  # not a verdict, no reason tag
    bounded = Tail(keep=64)
    bounded.tee(lambda chunk: None)(b"y" * 10_000)
    assert len(bounded.data) == 64
