"""Replay on Kubernetes without a cluster: the Job manifest (round-tripped through the
official client's own models), option parsing, and the GPU/driver pre-flight on recorded
GPU feature discovery node labels (tests/fixtures/recorded/kube, see PROVENANCE.md)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from envlock.adapters import kube as kube_client
from envlock.config import Config
from envlock.errors import EnvlockError, UsageError
from envlock.model import kubejob, yamlout
from envlock.model.replayspec import ContainerFlags, GpuRequest, ReplaySpec
from envlock.operations import kube, replayplan
from envlock.operations.replayplan import BASE_ENV, ReplayRequest
from envlock.snapshot import gpu
from tests.factories import make_lock

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded" / "kube"
RUN_ID = "0f3c9a1e2b7d4c56a8e9f0123456789a"
REPLAY_ID = "9b8a7c6d5e4f40312233445566778899"
IMAGE = "registry.example.com/team/proj@sha256:" + "ab" * 32
URI = "http://mlflow.ml.svc.cluster.local:5000"


REPLAY_FIELDS = {f.name for f in dataclasses.fields(ReplaySpec)}


def spec(**overrides: object) -> kubejob.JobSpec:
    """A Job's spec; overrides of ReplaySpec fields go to its container (``gpus``: a count)."""
    container: dict[str, object] = {"run_id": RUN_ID, "image": IMAGE, "env": dict(BASE_ENV)}
    fields: dict[str, object] = {"name": kubejob.job_name(RUN_ID, REPLAY_ID), "tracking_uri": URI,
                                 "replay_run_id": REPLAY_ID,
                                 "original_command": "python train.py --epochs 3"}
    for key, value in overrides.items():
        if key == "gpus":
            value = GpuRequest(count=value) if value else None  # type: ignore[arg-type]
        if key == "env":
            value = {**BASE_ENV, **value}  # type: ignore[dict-item]
        (container if key in REPLAY_FIELDS else fields)[key] = value
    return kubejob.JobSpec(replay=ReplaySpec(**container), **fields)  # type: ignore[arg-type]


OPTION_SETS = {
    "cpu": spec(),
    "gpus-selectors-tolerations": spec(
        gpus=2, namespace="ml-replays",
        node_selector=kubejob.parse_node_selector(["nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
                                                "pool=gpu"]),
        tolerations=tuple(kubejob.parse_toleration(t) for t in
                          ("nvidia.com/gpu=present:NoSchedule", "dedicated:NoExecute",
                           "spot:Exists"))),
    "command-env-secrets": spec(
        command="python train.py --epochs 1", env=kubejob.parse_env(["SEED=7", "OMP_NUM_THREADS="]),
        env_from_secrets=("mlflow-credentials",), image_pull_secret="regcred"),
    "dry-run": spec(replay_run_id=None, name=kubejob.job_name(RUN_ID)),
    "shm-cpus-memory": spec(gpus=1, shm_size=8 << 30, cpus=1.5, memory=16 << 30),
}


def container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def env_of(manifest: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(manifest)["env"]}


# ------------------------------------------------------------------ the manifest

@pytest.mark.extra("kubernetes")
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_manifest_round_trips_through_the_clients_models(name):
    import kubernetes.client as client  # ~0.4 s: only where a test needs it

    manifest = kubejob.job_manifest(OPTION_SETS[name])
    api = client.ApiClient()
    job = kube_client.to_model(api, manifest)
    assert isinstance(job, client.V1Job)
    assert job.spec.template.spec.containers[0].security_context.read_only_root_filesystem
    assert api.sanitize_for_serialization(job) == manifest  # no field unknown to the API


@pytest.mark.extra("kubernetes")
def test_round_trip_would_catch_a_misspelled_field():
    import kubernetes.client as client  # ~0.4 s: only where a test needs it

    manifest = kubejob.job_manifest(spec())
    manifest["spec"]["backofLimit"] = manifest["spec"].pop("backoffLimit")
    api = client.ApiClient()
    assert api.sanitize_for_serialization(kube_client.to_model(api, manifest)) != manifest


def test_manifest_runs_the_pinned_image_hardened():
    manifest = kubejob.job_manifest(spec())
    pod = manifest["spec"]["template"]["spec"]
    main = container(manifest)
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    assert main["image"] == IMAGE and "@sha256:" in main["image"]
    assert pod["restartPolicy"] == "Never" and manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["ttlSecondsAfterFinished"] > 0
    security = main["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp", "/workspace": "workspace", "/dev/shm": "shm"}
    assert all(volumes[n] == {"name": n, "emptyDir": {}} for n in ("tmp", "workspace"))
    assert volumes["shm"] == {"name": "shm", "emptyDir": {"medium": "Memory"}}
    # the emptyDir is filled with the image's /workspace (the code) before the experiment
    init = pod["initContainers"][0]
    assert init["image"] == IMAGE and init["securityContext"] == security
    # entry by entry: `cp -a /workspace/. VOL/` fails on the volume's root-owned root as uid 1000
    assert init["command"][-1] == kubejob.WORKSPACE_FILL and "/workspace/." not in \
        init["command"][-1] and "-t /envlock/workspace" in init["command"][-1]
    assert "command" not in main  # the image's CMD is the captured command
    assert manifest["metadata"]["annotations"]["envlock.dev/command"] == \
        "python train.py --epochs 3"


def test_gpu_limits_only_when_asked():
    assert "resources" not in container(kubejob.job_manifest(spec()))
    limits = container(kubejob.job_manifest(OPTION_SETS["gpus-selectors-tolerations"]))
    assert limits["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert "tolerations" not in kubejob.job_manifest(spec())["spec"]["template"]["spec"]
    # GPU node pools are tainted nvidia.com/gpu: a pod asking for GPUs tolerates that taint
    pod = kubejob.job_manifest(spec(gpus=1))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]


def test_shm_volume_and_cpu_memory_requests_equal_limits():
    manifest = kubejob.job_manifest(OPTION_SETS["shm-cpus-memory"])
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in container(manifest)["volumeMounts"]
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "1500m", "memory": "16Gi"},
        "limits": {"cpu": "1500m", "memory": "16Gi", "nvidia.com/gpu": "1"}}
    assert kubejob.quantity(64 << 20) == "64Mi" and kubejob.quantity(1000) == "1000"
    assert kubejob.cpu_quantity(4.0) == "4"


def test_plan_sizes_shm_from_the_lock_and_pins_threads_to_the_original(tmp_path):
    from envlock.model import lockfile

    host = {"cpu": {"arch": "x86_64", "usable_cores": 8, "isa_level": "x86-64-v4"},
            "memory": {"total_bytes": 64 << 30}, "shm": {"size_bytes": 32 << 30}}
    lock = make_lock(host=host)

    class Tracker:
        uri = URI

        def run(self, run_id):
            from envlock.adapters.tracking import RunData

            return RunData(run_id=run_id, experiment_id="1", status="FINISHED", name="r",
                           tags={"envlock.image": IMAGE, "envlock.lock_digest": lock.lock_digest})

        def download(self, run_id, name, dest):
            return lockfile.write(lock, dest / name)

    def plan(**given: object) -> kube.Plan:
        request = ReplayRequest(RUN_ID, ContainerFlags(**given))  # type: ignore[arg-type]
        made, context = replayplan.kubernetes(request, tracker=Tracker(), config=Config())
        return kube.plan(made, context, tracker=Tracker(), options=kube.KubeOptions())

    planned = plan(cpus="2", memory="8g", env=("MKL_NUM_THREADS=1",))
    replay = planned.spec.replay
    assert replay.shm_size == 32 << 30 and replay.memory == 8 << 30
    assert replay.env["OMP_NUM_THREADS"] == "8"  # 2 CPUs asked, 8 originally
    assert replay.env["MKL_NUM_THREADS"] == "1"  # --env wins
    volumes = {v["name"]: v for v in planned.manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"]["sizeLimit"] == "32Gi"
    override = plan(shm_size="1g").spec.replay
    assert override.shm_size == 1 << 30 and override.cpus is None
    with pytest.raises(UsageError, match="--shm-size"):
        plan(shm_size="big")
    with pytest.raises(UsageError, match="only with --on local"):
        plan(mounts=("/data:/data",))
    timed = plan(timeout="30m").manifest["spec"]["template"]["spec"]
    assert timed["activeDeadlineSeconds"] == 1800


def test_labels_are_valid_and_link_back_to_the_runs():
    for option_set in OPTION_SETS.values():
        manifest = kubejob.job_manifest(option_set)
        name = manifest["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
        labels = manifest["metadata"]["labels"]
        assert manifest["spec"]["template"]["metadata"]["labels"] == labels
        for key, value in labels.items():
            assert kubejob.is_label_key(key) and kubejob.is_label_value(value) and len(value) <= 63
        assert labels["envlock.dev/run-id"] == RUN_ID
        assert labels["app.kubernetes.io/managed-by"] == "envlock"
        notes = manifest["metadata"]["annotations"]
        assert notes["envlock.dev/image"] == IMAGE and notes["envlock.dev/run-id"] == RUN_ID
    real = kubejob.job_manifest(spec())
    assert real["metadata"]["labels"]["envlock.dev/replay-run-id"] == REPLAY_ID
    assert real["metadata"]["name"] == f"envlock-replay-{RUN_ID[:12]}-{REPLAY_ID[:8]}"


def test_env_points_the_experiments_mlflow_at_the_replay_run():
    env = env_of(kubejob.job_manifest(spec()))
    assert env["MLFLOW_TRACKING_URI"] == URI and env["MLFLOW_RUN_ID"] == REPLAY_ID
    dry = kubejob.job_manifest(OPTION_SETS["dry-run"])
    assert env_of(dry)["MLFLOW_RUN_ID"] == kubejob.DRY_RUN_REPLAY_ID
    assert "envlock.dev/replay-run-id" not in dry["metadata"]["labels"]
    assert dry["metadata"]["annotations"]["envlock.dev/replay-run-id"] == \
        kubejob.DRY_RUN_REPLAY_ID
    # child runs the experiment makes land in the original's experiment
    assert "MLFLOW_EXPERIMENT_ID" not in env
    assert env_of(kubejob.job_manifest(spec(experiment_id="7")))["MLFLOW_EXPERIMENT_ID"] == "7"


def test_scheduling_command_env_and_secrets():
    pod = kubejob.job_manifest(OPTION_SETS["gpus-selectors-tolerations"])
    assert pod["metadata"]["namespace"] == "ml-replays"
    template = pod["spec"]["template"]["spec"]
    assert template["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                        "pool": "gpu"}
    assert template["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
         "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
        {"key": "spot", "operator": "Exists"}]
    custom = kubejob.job_manifest(OPTION_SETS["command-env-secrets"])
    main = container(custom)
    assert main["command"] == ["/bin/sh", "-c", "python train.py --epochs 1"]
    assert env_of(custom)["SEED"] == "7" and env_of(custom)["OMP_NUM_THREADS"] == ""
    assert main["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert custom["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_dry_run_yaml_reads_back_as_the_manifest():
    manifest = kubejob.job_manifest(OPTION_SETS["command-env-secrets"])
    assert yaml.safe_load(yamlout.dump(manifest)) == manifest


@pytest.mark.parametrize("run_id", [RUN_ID, "ABC_def.123", "x" * 80])
def test_job_names_are_dns_labels(run_id):
    for suffix in (None, REPLAY_ID, "--"):
        name = kubejob.job_name(run_id, suffix)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


# ------------------------------------------------------------------ option parsing

@pytest.mark.parametrize("text", ["gpu", "=v:NoSchedule", "k=v:Sometimes", "k=:NoSchedule",
                                  "k=v:Exists", "bad key:NoSchedule", "k=a b:NoExecute", ""])
def test_bad_tolerations_are_refused_with_the_syntax(text):
    with pytest.raises(UsageError) as err:
        kubejob.parse_toleration(text)
    assert "KEY=VALUE:EFFECT" in str(err.value)


@pytest.mark.parametrize("values", [["pool"], ["=gpu"], ["pool=a b"], ["a/b/c=x"],
                                    ["k=" + "v" * 64]])
def test_bad_node_selectors_are_refused(values):
    with pytest.raises(UsageError, match="--node-selector"):
        kubejob.parse_node_selector(values)


def test_gpus_must_be_a_number_on_kubernetes():
    assert kubejob.parse_gpu_count(None, 2) == 2
    assert kubejob.parse_gpu_count("none", 2) == 0 and kubejob.parse_gpu_count("4", 0) == 4
    for value in ("all", "device=0,1", "-1"):
        with pytest.raises(UsageError, match="number"):
            kubejob.parse_gpu_count(value, 1)


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", "aws_secret",
                                  "GOOGLE_APPLICATION_CREDENTIALS", "BASIC_AUTH"])
def test_secret_looking_env_is_refused_for_a_secret(name):
    with pytest.raises(UsageError) as err:
        kubejob.parse_env([f"{name}=hunter2"])
    assert "--env-from-secret" in str(err.value) and "hunter2" not in str(err.value)


def test_env_that_envlock_sets_is_refused():
    with pytest.raises(UsageError, match="set by envlock"):
        kubejob.parse_env(["MLFLOW_RUN_ID=abc"])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        kubejob.parse_env(["no-equals"])


@pytest.mark.parametrize("uri, reachable", [
    ("sqlite:///home/me/mlflow.db", False), ("file:///home/me/mlruns", False),
    ("mlruns", False), ("http://127.0.0.1:5000", False), ("http://localhost:5000", False),
    ("http://[::1]:5000", False), (URI, True), ("https://mlflow.example.com", True),
    ("databricks", True), ("postgresql://db.internal/mlflow", True)])
def test_tracking_uris_a_pod_cannot_reach(uri, reachable):
    assert (kubejob.tracking_uri_problem(uri) is None) is reachable


def test_a_tracking_uri_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(UsageError) as err:
        kube._check_tracking("https://alice:hunter2@mlflow.example.com")
    assert "--env-from-secret" in str(err.value) and "hunter2" not in str(err.value)
    kube._check_tracking(URI)  # a server the cluster can reach: fine


# ------------------------------------------------------------------ node-label pre-flight

def recorded_labels(name: str) -> dict[str, str]:
    text = (RECORDED / name).read_text()
    return dict(json.loads(text if name.endswith(".json") else "{" + text + "}"))


OLD = recorded_labels("gfd-labels-a100-driver450.json")
NEW = recorded_labels("gfd-labels-rtx4000ada-driver580.txt")
UNLABELED = {k: v for k, v in NEW.items() if not k.startswith("nvidia.com/")}
LOCK = make_lock()  # torch 2.3.1+cu121, recorded on an A100-SXM4-80GB
LOCKED = {"frameworks": LOCK.frameworks, "gpu": LOCK.gpu}


def test_labels_become_the_host_gpu_shape_of_probe_gpu():
    host = kubejob.host_gpu_from_labels(NEW)
    probed = gpu.gpu_section({"driver_version": "1", "devices": [
        {"index": 0, "name": "x", "compute_capability": [8, 9], "memory_total_bytes": 1}]})
    assert host is not None and set(host) == set(probed)
    assert set(host["devices"][0]) == set(probed["devices"][0])
    assert host["driver_version"] == "580.95.05" and host["cuda_driver_version"] == "13.0"
    assert host["devices"] == [{"index": 0, "name": "NVIDIA-RTX-4000-Ada-Generation",
                                "compute_capability": "8.9", "memory_mib": 20475}]
    old = kubejob.host_gpu_from_labels(OLD)  # only the older GFD label spelling
    assert old is not None and old["driver_version"] == "450.80.02"
    assert old["cuda_driver_version"] == "11.0"
    assert old["devices"][0]["compute_capability"] == "8.0"
    assert kubejob.host_gpu_from_labels(UNLABELED) is None


def test_product_label_is_matched_to_the_locks_device_name():
    host = kubejob.host_gpu_from_labels(NEW, ["NVIDIA RTX 4000 Ada Generation"])
    assert host is not None and host["devices"][0]["name"] == "NVIDIA RTX 4000 Ada Generation"


def test_node_with_a_driver_too_old_for_the_locks_cuda_fails():
    verdict = kubejob.preflight_from_nodes({"dgx": OLD}, LOCKED, gpus=1)
    assert not verdict.ok
    assert "dgx" in verdict.problems[0] and "450.80.02" in verdict.problems[0]


def test_node_with_a_new_enough_driver_passes():
    verdict = kubejob.preflight_from_nodes({"lke": NEW}, LOCKED, gpus=1)
    assert verdict.ok and not verdict.problems


def test_unlabeled_nodes_skip_the_preflight_with_a_warning():
    verdict = kubejob.preflight_from_nodes({"plain": UNLABELED}, LOCKED, gpus=1)
    assert verdict.ok and "skipped" in verdict.warnings[0]
    assert "skipped" in kubejob.preflight_from_nodes({}, LOCKED, gpus=1).warnings[0]


def test_only_nodes_the_pod_can_land_on_count():
    nodes = {"dgx": OLD, "lke": NEW}
    mixed = kubejob.preflight_from_nodes(nodes, LOCKED, gpus=1)
    assert mixed.ok and any("dgx" in w and "--node-selector" in w for w in mixed.warnings)
    pinned = kubejob.preflight_from_nodes(
        nodes, LOCKED, gpus=1, node_selector={"nvidia.com/gpu.product": "A100-SXM4-40GB"})
    assert not pinned.ok
    too_many = kubejob.preflight_from_nodes(nodes, LOCKED, gpus=2)
    assert too_many.ok and "skipped" in too_many.warnings[0]
    assert kubejob.preflight_from_nodes({"dgx": OLD}, LOCKED, gpus=0).ok


# ------------------------------------------------------------------ the cluster

@pytest.mark.extra("kubernetes")
def test_no_kubeconfig_is_one_line_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing" / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(EnvlockError) as err:
        kube_client.run_job(kubejob.job_manifest(spec()), output=lambda chunk: None)
    assert err.value.message.startswith("no Kubernetes cluster configured")
    assert "\n" not in str(err.value)
    assert err.value.hint == "set KUBECONFIG or run inside a cluster"


# ---------------------------------------------------------------- following a Job's pod

def ns(**fields: object) -> SimpleNamespace:
    return SimpleNamespace(**fields)


def pod(phase: str = "Pending", init=(), main=(), conditions=(), reason=None) -> SimpleNamespace:
    return ns(metadata=ns(name="p"), status=ns(
        phase=phase, reason=reason, message=None, conditions=list(conditions),
        init_container_statuses=list(init), container_statuses=list(main)))


def state(name: str, waiting=None, terminated=None) -> SimpleNamespace:
    return ns(name=name, state=ns(waiting=waiting, terminated=terminated))


def test_pod_problems_are_kubernetes_reasons_and_the_experiments_exit_is_not_one():
    pull = state("experiment", waiting=ns(reason="ErrImagePull", message="not found"))
    assert kube_client._pod_problem(pod(main=[pull])) == ("experiment", "ErrImagePull: not found")
    init = state("workspace", terminated=ns(exit_code=1, reason="Error"))
    assert kube_client._pod_problem(pod("Failed", init=[init]))[1] == \
        "init container workspace failed: Error (exit 1)"
    unschedulable = ns(type="PodScheduled", reason="Unschedulable",
                       message="0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    assert kube_client._pod_problem(pod(conditions=[unschedulable])) == (
        None, "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    assert kube_client._pod_problem(pod("Failed", reason="Evicted"))[1] == "Evicted"
    failed = state("experiment", terminated=ns(exit_code=3, reason="Error"))
    assert kube_client._pod_problem(pod("Failed", main=[failed])) is None


class DroppingLogs:
    """A log endpoint whose first stream drops after two chunks; each stream starts over."""

    def __init__(self) -> None:
        self.opened = 0

    def read_namespaced_pod_log(self, *args: object, **kwargs: object) -> object:
        self.opened += 1
        dropping = self.opened == 1

        def stream(size: int):
            from urllib3.exceptions import ProtocolError

            yield b"one\n"
            yield b"two\n"
            if dropping:
                raise ProtocolError("Connection broken: IncompleteRead")
            yield b"three\n"

        return ns(stream=stream, release_conn=lambda: None)


@pytest.mark.extra("kubernetes")
def test_a_dropped_log_stream_is_resumed_without_repeating_lines(monkeypatch):
    monkeypatch.setattr(kube_client.time, "sleep", lambda seconds: None)
    shown: list[bytes] = []
    logs = DroppingLogs()
    kube_client._stream_logs(logs, "default", "p", shown.append)
    assert b"".join(shown) == b"one\ntwo\nthree\n" and logs.opened == 2


@pytest.mark.extra("kubernetes")
def test_a_pull_secret_holds_the_credentials_as_docker_config_json():
    import base64

    import kubernetes.client as client

    manifest = kubejob.pull_secret_manifest("ml", "127.0.0.1:5000", "envlock", "pw")
    api = client.ApiClient()
    secret = kube_client.to_model(api, manifest, "V1Secret")
    assert secret.type == "kubernetes.io/dockerconfigjson" and secret.metadata.namespace == "ml"
    config = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
    entry = config["auths"]["127.0.0.1:5000"]
    assert entry["auth"] == base64.b64encode(b"envlock:pw").decode()
    # one name per registry and credentials: the same ones reuse it, new ones get a new one
    assert secret.metadata.name == kubejob.pull_secret_name("127.0.0.1:5000", "envlock", "pw")
    assert kubejob.pull_secret_name("127.0.0.1:5000", "envlock", "pw2") != secret.metadata.name
    assert kubejob.is_dns_subdomain(secret.metadata.name) and "pw" not in secret.metadata.name


def test_a_sweep_report_has_one_case_per_run_and_names_errors():
    from envlock.model import report
    from envlock.model.compare import Comparison, MetricRow

    row = MetricRow("loss", 0.25, 0.25, True)
    good = kube.KubeReplayResult(original_run_id="a", replay_run_id="ra", image=IMAGE,
                                 exit_code=0, job="default/j-a",
                                 comparison=Comparison(rows=(row,)))
    items = [kube.SweepItem("a", good), kube.SweepItem("b", error="ErrImagePull: not found")]
    cases = report.sweep_cases(items)
    assert [c.ok for c in cases] == [True, False]
    assert "infrastructure error: ErrImagePull" in cases[1].detail
    assert "replay run ra" in cases[0].detail
    assert "1/2 reproduced" in report.sweep_markdown("nightly", items)
