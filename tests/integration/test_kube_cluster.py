"""``envlock replay --on kubernetes`` on the live one-node cluster of ``scripts/k8s``.

A small experiment is captured against an ``mlflow server`` on the pods' bridge gateway,
its image pushed to the loopback test registry; the replay runs as a real batch/v1 Job that
pulls the image by digest and logs straight into the replay run. Failures around the
experiment (an image that cannot be pulled, a pod no node can take) are one-line errors,
exit 2, with the replay run FAILED and the reason in ``envlock.failure``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster import NODE
from tests.integration.conftest import Experiment, make_experiment

pytestmark = pytest.mark.kubernetes
REPO = f"tests/kube-{uuid.uuid4().hex[:8]}"
TIMES: dict[str, float] = {}


def mlflow_client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store)


def kube_api(kubeconfig: str):
    from kubernetes import client, config

    api = config.new_client_from_config(kubeconfig)
    return client.BatchV1Api(api), client.CoreV1Api(api)


@pytest.fixture(scope="module")
def captured(tmp_path_factory, experiment_venv, cluster_mlflow, infra, created_images
             ) -> tuple[Experiment, str]:
    """One small run captured against the cluster's tracking server, its image pushed."""
    exp = make_experiment(tmp_path_factory.mktemp("kube") / "exp", experiment_venv,
                          cluster_mlflow)
    run_id = exp.train()
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{REPO}")
    return exp, run_id


def replay_on_kubernetes(exp: Experiment, run_id: str, *args: str):
    return exp.envlock("replay", run_id, "--on", "kubernetes", "--json", *args)


def timed(label: str, func, *args):
    start = time.monotonic()
    result = func(*args)
    TIMES[label] = round(time.monotonic() - start, 1)
    print(f"\n[timing] {label}: {TIMES[label]} s")
    return result


def test_a_replay_job_reproduces_the_run_like_a_local_replay(captured, cluster):
    exp, run_id = captured
    local = timed("local replay", exp.envlock, "replay", run_id, "--json")
    assert local.returncode == 0, local.stderr[-3000:]
    first = timed("kubernetes replay (image pulled)", replay_on_kubernetes, exp, run_id)
    assert first.returncode == 0, first.stderr[-3000:]
    again = timed("kubernetes replay (image on the node)", replay_on_kubernetes, exp, run_id)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)["result"]
    assert result["comparison"]["reproduced"] is True
    client = mlflow_client(exp.store)
    original, replayed = client.get_run(run_id), client.get_run(result["replay_run_id"])
    assert replayed.data.metrics == original.data.metrics and "loss" in replayed.data.metrics
    assert replayed.data.tags["envlock.verdict"] == "reproduced"
    assert replayed.info.status == "FINISHED"
    namespace, name = result["job"].split("/")
    job = kube_api(cluster.kubeconfig)[0].read_namespaced_job(name, namespace)
    pod = job.spec.template.spec
    shm = next(v for v in pod.volumes if v.name == "shm")
    assert shm.empty_dir.medium == "Memory"
    assert pod.containers[0].image == original.data.tags["envlock.image"]
    assert "@sha256:" in pod.containers[0].image
    lineage = exp.envlock("lineage", run_id, "--json")
    replays = json.loads(lineage.stdout)["result"]["replays"]
    assert sum(r["verdict"] == "reproduced" for r in replays) == 3


def assert_failed_replay(exp: Experiment, result, *needles: str) -> None:
    """Exit 2, one line naming the reason, the replay run FAILED with that reason."""
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"] if result.stdout.strip() else result.stderr
    text = json.dumps(error)
    for needle in needles:
        assert needle in text, text
    client = mlflow_client(exp.store)
    replays = client.search_runs(["0"], filter_string="tags.`envlock.replayed_on` = "
                                 "'kubernetes'", order_by=["attributes.start_time DESC"],
                                 max_results=1)
    assert replays[0].info.status == "FAILED"
    failure = replays[0].data.tags["envlock.failure"]
    for needle in needles:
        assert needle in failure, failure
    assert "NOT REPRODUCED" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, needles", [
    (("--node-selector", "envlock.dev/pool=none"), ("Unschedulable", "match Pod's node")),
    (("--gpus", "1"), ("Unschedulable", "nvidia.com/gpu")),
])
def test_a_pod_no_node_can_take_fails_with_the_schedulers_reason(captured, cluster, args,
                                                                  needles):
    exp, run_id = captured
    assert_failed_replay(exp, replay_on_kubernetes(exp, run_id, *args, "--force"), *needles)


def test_an_unknown_digest_fails_with_the_pull_error(captured, cluster):
    exp, run_id = captured
    client = mlflow_client(exp.store)
    image = client.get_run(run_id).data.tags["envlock.image"]
    client.set_tag(run_id, "envlock.image", image.split("@")[0] + "@sha256:" + "0" * 64)
    try:
        result = replay_on_kubernetes(exp, run_id)
    finally:
        client.set_tag(run_id, "envlock.image", image)
    assert_failed_replay(exp, result, "ErrImagePull", "not found")


def test_an_oom_kill_is_an_infrastructure_failure(captured, cluster):
    exp, run_id = captured
    result = replay_on_kubernetes(exp, run_id, "--memory", "64m", "--command",
                                  "python -c 'b = bytearray(512 << 20); print(len(b))'")
    assert_failed_replay(exp, result, "OOMKilled")


def test_a_private_registry_gets_a_pull_secret_from_the_docker_config(
        captured, cluster, infra, created_images, tmp_path, monkeypatch):
    import base64

    exp, _ = captured
    config = tmp_path / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{infra.auth_user}:{infra.auth_password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {infra.auth_registry: {
        "auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    run_id = exp.train()
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.auth_registry}/{REPO}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    refused = replay_on_kubernetes(exp, run_id)
    assert_failed_replay(exp, refused, "ErrImagePull", "401")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    result = replay_on_kubernetes(exp, run_id)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    assert payload["comparison"]["reproduced"] is True
    namespace, name = payload["job"].split("/")
    job = kube_api(cluster.kubeconfig)[0].read_namespaced_job(name, namespace)
    secrets = [s.name for s in job.spec.template.spec.image_pull_secrets]
    assert len(secrets) == 1 and secrets[0].startswith("envlock-pull-")
    assert infra.auth_password not in result.stdout + result.stderr


# ---------------------------------------------------------------- GPU pre-flight on the node

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded" / "kube"


def recorded_labels(name: str) -> dict[str, str]:
    text = (RECORDED / name).read_text()
    return dict(json.loads(text if name.endswith(".json") else "{" + text + "}"))


@pytest.fixture
def gpu_node(cluster):
    """The test node; its nvidia.com/* labels removed again afterwards."""
    _, core = kube_api(cluster.kubeconfig)
    yield core
    labels = core.read_node(NODE).metadata.labels or {}
    core.patch_node(NODE, {"metadata": {"labels": {
        k: None for k in labels if k.startswith("nvidia.com/")}}})


def label_node(core, labels: dict[str, str]) -> None:
    current = core.read_node(NODE).metadata.labels or {}
    gone = {k: None for k in current if k.startswith("nvidia.com/") and k not in labels}
    core.patch_node(NODE, {"metadata": {"labels": {**gone, **labels}}})


@pytest.mark.parametrize("recorded, ok", [("gfd-labels-a100-driver450.json", False),
                                          ("gfd-labels-rtx4000ada-driver580.txt", True)])
def test_the_preflight_reads_gpu_labels_from_the_real_node(gpu_node, cluster, recorded, ok):
    """The recorded GPU feature discovery labels (an old driver, a new one) set on the node
    through the API: the pre-flight on the live node list decides as on recorded data."""
    from envlock.adapters import kube as kube_client
    from envlock.model.kubejob import is_label_value
    from tests.factories import make_lock

    # the A100 recording comes from a guide whose `gpu.machine: NVIDIA DGX` (a space) an API
    # server refuses as a label value: set only what a real node can carry
    labels = {k: v for k, v in recorded_labels(recorded).items()
              if k.startswith("nvidia.com/") and is_label_value(v)}
    label_node(gpu_node, labels)
    lock = make_lock()  # torch 2.3.1+cu121 on an A100
    api = kube_client.load_client()
    verdict = kube_client.node_preflight(api, {"frameworks": lock.frameworks, "gpu": lock.gpu},
                                         1, {})
    assert verdict.ok is ok, verdict
    if not ok:
        assert NODE in verdict.problems[0] and "450.80.02" in verdict.problems[0]
    assert kube_client.node_preflight(api, {"frameworks": lock.frameworks, "gpu": lock.gpu},
                                      1, {"pool": "elsewhere"}).warnings  # selector: skipped


def test_a_job_that_does_not_reproduce_is_explained_and_reported(captured, cluster,
                                                                 tmp_path):
    """As a local replay: the ranked explanations (printed, in --json, recorded on the
    replay run) and envlock/report.html on the replay run."""
    exp, run_id = captured
    command = "python train.py --seed 1"
    replayed = replay_on_kubernetes(exp, run_id, "--command", command)
    assert replayed.returncode == 0, replayed.stderr[-3000:]  # the experiment itself ran
    result = json.loads(replayed.stdout)["result"]
    assert result["comparison"]["reproduced"] is False
    why = result["explanations"][0]
    assert why["kind"] == "command", result["explanations"]
    assert why["evidence"] == ["original: python train.py", f"replay: {command}"]
    client = mlflow_client(exp.store)
    replay_id = result["replay_run_id"]
    assert client.get_run(replay_id).data.tags["envlock.explanation"] == why["title"]
    page = Path(client.download_artifacts(replay_id, "envlock/report.html", str(tmp_path)))
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and replay_id in text and command in text
    assert "<svg" in text  # the loss history plotted, original against replay


def test_a_detached_replay_is_concluded_later_by_verify(captured, cluster, tmp_path):
    exp, run_id = captured
    submitted = exp.envlock("replay", run_id, "--on", "kubernetes", "--detach", "--json")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    payload = json.loads(submitted.stdout)["result"]
    replay_id = payload["replay_run_id"]
    assert payload["detached"] and payload["job"].startswith("default/envlock-replay-")
    lineage = json.loads(exp.envlock("lineage", run_id, "--json").stdout)["result"]
    pending = next(r for r in lineage["replays"] if r["run_id"] == replay_id)
    assert pending["job"] == payload["job"] and pending["verdict"] is None
    assert pending["job_state"] in ("running", "succeeded")
    junit = tmp_path / "verify.xml"
    verified = exp.envlock("verify", "--replay", replay_id, "--junit", str(junit), "--json")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert json.loads(verified.stdout)["result"]["reproduced"] is True
    assert "failures=\"0\"" in junit.read_text() or "failure" not in junit.read_text()
    assert mlflow_client(exp.store).get_run(replay_id).data.tags["envlock.verdict"] == \
        "reproduced"
    again = exp.envlock("verify", "--replay", replay_id)
    assert again.returncode == 2 and "concluded already" in again.stderr


def test_a_sweep_with_child_runs_and_artifacts_replays_as_locally(
        tmp_path, experiment_venv, cluster_mlflow, infra, created_images, cluster):
    """A parent run, three child runs with histories and files, a figure: the Job's replay
    tree matches the original's as a local replay's does, artifacts identical by hash."""
    from tests.conftest import ROOT, init_repo

    root = init_repo(tmp_path / "sweep", {
        "train.py": (ROOT / "tests" / "experiments" / "sweep.py").read_text(),
        ".gitignore": "mlflow.db\n.envlock/\nmlruns/\n"})
    exp = Experiment(root=root, python=experiment_venv, store=cluster_mlflow)
    exp.train("--children", "3")
    run_id = mlflow_client(exp.store).search_runs(
        ["0"], filter_string="attributes.run_name = 'sweep'",
        order_by=["attributes.start_time DESC"], max_results=1)[0].info.run_id
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{REPO}-sweep",
                command="python train.py --children 3")
    outcomes = {}
    for on in ("local", "kubernetes"):
        result = exp.envlock("replay", run_id, "--on", on, "--compare-artifacts", "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        outcomes[on] = json.loads(result.stdout)["result"]["comparison"]
    for comparison in outcomes.values():
        assert comparison["reproduced"] is True, comparison
        assert [r["name"] for r in comparison["runs"]] == ["lr=0.05", "lr=0.1", "lr=0.15"]
        assert {a["status"] for a in comparison["artifacts"]} == {"identical"}
    paths = [sorted(a["path"] for a in c["artifacts"]) for c in outcomes.values()]
    assert paths[0] == paths[1] and "figures/loss.png" in paths[0]


def test_a_job_deleted_while_it_runs_is_an_infrastructure_failure(captured, cluster):
    exp, run_id = captured
    submitted = exp.envlock("replay", run_id, "--on", "kubernetes", "--detach", "--json",
                            "--command", "echo started; sleep 120")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    payload = json.loads(submitted.stdout)["result"]
    namespace, name = payload["job"].split("/")
    batch, core = kube_api(cluster.kubeconfig)
    deadline = time.monotonic() + 60
    while not [p for p in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}"
                                                   ).items if p.status.phase == "Running"]:
        assert time.monotonic() < deadline, "the pod never ran"
        time.sleep(0.5)
    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    result = exp.envlock("verify", "--replay", payload["replay_run_id"], "--json")
    assert_failed_replay(exp, result, "was deleted")


def test_a_sweep_replays_an_experiments_last_runs_as_parallel_jobs(
        captured, cluster, infra, created_images, tmp_path):
    """The nightly gate: `verify --experiment NAME --last 2 --on kubernetes --parallel 2`
    replays the two newest captured runs as Jobs at once and writes one report."""
    import subprocess

    exp, _ = captured
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    client = mlflow_client(exp.store)
    experiment_id = client.create_experiment(name)
    runs = []
    for seed in ("1", "2"):
        done = subprocess.run([str(exp.python), "train.py", "--seed", seed], cwd=exp.root,
                              env={**os.environ, **exp.env(MLFLOW_EXPERIMENT_NAME=name)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        runs.append(client.search_runs([experiment_id], order_by=["attributes.start_time "
                                                                 "DESC"])[0].info.run_id)
        exp.capture(runs[-1], infra, created_images, "--registry", f"{infra.registry}/{REPO}",
                    command=f"python train.py --seed {seed}")
    junit, summary = tmp_path / "nightly.xml", tmp_path / "nightly.md"
    started = time.monotonic()
    result = exp.envlock("verify", "--experiment", name, "--last", "2", "--on", "kubernetes",
                         "--parallel", "2", "--junit", str(junit), "--markdown", str(summary),
                         "--json")
    TIMES["sweep of 2 runs, parallel 2"] = round(time.monotonic() - started, 1)
    print(f"\n[timing] sweep of 2: {TIMES['sweep of 2 runs, parallel 2']} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith("{"), repr(result.stdout[:300])
    payload = json.loads(result.stdout)["result"]
    assert [r["run_id"] for r in payload["runs"]] == runs[::-1]
    assert all(r["reproduced"] for r in payload["runs"])
    assert junit.read_text().count("<testcase") == 2 and 'failures="0"' in junit.read_text()
    assert "2/2 reproduced" in summary.read_text()


# ---------------------------------------------------------------- pinned inputs

INPUTS_TRAIN = """import argparse
import os

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--data")
args = parser.parse_args()
rows = [float(x) for x in open("data/train.csv").read().split()]
extra = [float(x) for x in open(args.data).read().split()]
images = sorted(os.path.relpath(os.path.join(folder, name), "data/imgs")
                for folder, _, names in os.walk("data/imgs") for name in names)
pixels = sum(len(open(os.path.join("data/imgs", n), "rb").read()) for n in images)
print("inputs writable:", [os.access(p, os.W_OK) for p in ("data/train.csv", args.data,
                                                           "data/imgs/a.png")])
with mlflow.start_run():
    mlflow.log_metric("total", sum(rows) + sum(extra) + pixels)
    mlflow.log_param("images", ",".join(images))
"""


def test_a_job_replays_from_the_pinned_inputs_after_the_host_data_changed(
        tmp_path, experiment_venv, cluster_mlflow, infra, created_images, cluster):
    """Git-ignored data declared in [tool.envlock] (a file and a directory) and an absolute
    path on the command line, captured with copies; the host's data is then changed and
    deleted, and the Job still reproduces the run: its inputs image carried the pinned
    copies, mounted read-only where the run saw them."""
    from tests.conftest import init_repo

    root = init_repo(tmp_path / "inputs", {
        "train.py": INPUTS_TRAIN,
        "pyproject.toml": '[tool.envlock]\ninputs = ["data/train.csv", "data/imgs"]\n',
        ".gitignore": "mlflow.db\nmlruns/\n.envlock/\ndata/\n"})
    (root / "data" / "imgs" / "sub").mkdir(parents=True)
    (root / "data" / "train.csv").write_text("1\n2\n3\n")
    (root / "data" / "imgs" / "a.png").write_bytes(b"png-a" * 10)
    (root / "data" / "imgs" / "sub" / "b.png").write_bytes(b"png-b" * 20)
    extra = tmp_path / "shared" / "extra.csv"
    extra.parent.mkdir()
    extra.write_text("10\n20\n")
    exp = Experiment(root=root, python=experiment_venv, store=cluster_mlflow)
    run_id = exp.train("--data", str(extra))
    payload = timed("capture with 3 inputs", lambda: exp.capture(
        run_id, infra, created_images, "--registry", f"{infra.registry}/{REPO}",
        command=f"python train.py --data {extra}"))
    assert {i["path"]: i["carry"] for i in payload["inputs"]["inputs"]} == {
        "data/train.csv": "copy", "data/imgs": "copy", str(extra.resolve()): "copy"}
    (root / "data" / "train.csv").write_text("100\n")
    (root / "data" / "imgs" / "sub" / "b.png").unlink()
    extra.unlink()
    result = timed("kubernetes replay with inputs", replay_on_kubernetes, exp, run_id)
    assert result.returncode == 0, result.stderr[-3000:]
    replayed = json.loads(result.stdout)["result"]
    assert replayed["comparison"]["reproduced"] is True, replayed["comparison"]
    assert "inputs writable: [False, False, False]" in result.stdout + result.stderr
    tags = mlflow_client(exp.store).get_run(replayed["replay_run_id"]).data.tags
    derived = tags["envlock.inputs_image"]
    assert derived.startswith(f"{infra.registry}/{REPO}@sha256:")
    namespace, name = replayed["job"].split("/")
    job = kube_api(cluster.kubeconfig)[0].read_namespaced_job(name, namespace)
    pod = job.spec.template.spec
    assert [c.image for c in pod.init_containers] == [payload["image"], derived]
    assert pod.containers[0].image == payload["image"]  # the experiment: the run's image
    mounts = {m.mount_path: m.read_only for m in pod.containers[0].volume_mounts
              if m.name == "inputs"}
    assert mounts == {"/workspace/data/train.csv": True, "/workspace/data/imgs": True,
                      str(extra.resolve()): True}
