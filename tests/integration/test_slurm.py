"""Replays and verification sweeps on a real one-node Slurm (issue #26).

The cluster is Debian's slurm-wlm (munged, slurmctld, slurmd on this machine) started by
``scripts/slurm/start.sh`` (tests/slurm.py); the jobs run Debian's Podman, which pulls the
images the Docker engine built, by digest, from a real registry on 127.0.0.1 of this
module's own, served over HTTPS with a self-signed certificate made here, as Charliecloud
0.31's ``ch-image`` talks to registries only over HTTPS (Podman, as Docker, takes it too).
Podman and Charliecloud keep the images in storages of this module's own
(``CONTAINERS_STORAGE_CONF``, ``CH_IMAGE_STORAGE``, which sbatch passes on to the job),
removed at the end. Nothing here fakes Slurm: a missing cluster fails these tests.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import slurm
from tests.conftest import ROOT
from tests.integration.conftest import make_experiment
from tests.registry import RegistryError, start_tls

REPO = f"tests/slurm-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster():
    try:
        was_up = slurm.ensure()
    except (slurm.SlurmUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the test Slurm did not start: {exc}", pytrace=False)
    yield
    if not was_up:
        slurm.stop()


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """Podman's storage for the jobs: overlay, or vfs where the folder is on overlayfs."""
    root = tmp_path_factory.mktemp("slurm-podman")
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(root)], capture_output=True,
                        text=True, check=True).stdout.strip()
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "{"vfs" if fs == "overlayfs" else "overlay"}"\n'
                    f'graphroot = "{root}/storage"\nrunroot = "{root}/run"\n')
    yield conf
    subprocess.run(["podman", "rm", "--all", "--force"], capture_output=True, timeout=120,
                   env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)})
    # podman's overlay driver keeps its layer folder mounted on itself: undo that, then delete
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    for target in sorted({m.split()[1] for m in mounts if f" {root}/" in m}, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    """Debian's docker-registry over HTTPS, its certificate self-signed, on this machine's
    own address (envlock's registry client speaks plain HTTP to loopback ones); a CA bundle
    of the system's and that certificate, for the captures that push to it."""
    import socket as socket_

    host = socket_.gethostbyname(socket_.gethostname())
    if host.startswith("127."):
        with socket_.socket(socket_.AF_INET, socket_.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet sent: the route's source address
            host = probe.getsockname()[0]
    work = tmp_path_factory.mktemp("tls-registry")
    try:
        registry = start_tls(work, host)
    except RegistryError as exc:
        pytest.fail(str(exc), pytrace=False)
    bundle = work / "ca-bundle.pem"
    system = Path(os.environ.get("REQUESTS_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt")
    bundle.write_text(system.read_text() + (work / "cert.pem").read_text())
    yield registry.address, str(bundle)
    registry.stop()


@pytest.fixture(scope="module")
def runs(cluster, storage, tls_registry, tmp_path_factory, experiment_venv, infra,
         created_images):
    """Captured runs of one experiment, all of one image: four that reproduce, one whose
    recorded command drifts (another seed), one that sleeps past any timeout. The first
    also reads a pinned input, an absolute path copied at capture and changed on the host
    afterwards: its replays must read the pinned copy, read-only."""
    root = tmp_path_factory.mktemp("slurm") / "exp"
    exp = make_experiment(root, experiment_venv, f"sqlite:///{root.parent}/mlflow.db")
    address, bundle = tls_registry
    where = ("--registry", f"{address}/{REPO}")
    extra = root.parent / "extra.csv"
    extra.write_text("pinned\n")
    reads = "sh -c " + shlex.quote(  # the recorded command is an argv: the shell's own
        f"grep -qx pinned {extra} && ! (echo x >> {extra}) 2>/dev/null "
        f"&& echo input-read-only && python train.py")
    ids = {}
    for name, seed, command in (("ok", 0, reads),
                                ("ok1", 1, "python train.py --seed 1"),
                                ("ok2", 2, "python train.py --seed 2"),
                                ("ok3", 0, "python train.py --seed 0"),
                                ("drift", 2, "python train.py --seed 3"),
                                ("slow", 0, "sleep 600")):
        run_id = exp.train("--seed", str(seed))
        with pytest.MonkeyPatch.context() as patch:  # the capture's push trusts the cert
            patch.setenv("REQUESTS_CA_BUNDLE", bundle)
            given = ("--input", str(extra)) if name == "ok" else ()
            exp.capture(run_id, infra, created_images, *where, *given, command=command)
        ids[name] = run_id
    extra.write_text("changed\n")  # the replays read the pinned copy
    config = root.parent / "envlock.yaml"
    config.write_text(f"slurm:\n  partition: debug\n  job_dir: {root.parent}/jobs\n"
                      f"  insecure_registries: ['{address}']\n")
    env = {"ENVLOCK_CONFIG": str(config), "CONTAINERS_STORAGE_CONF": str(storage),
           "CH_IMAGE_STORAGE": str(storage.parent / "charliecloud"),
           "REQUESTS_CA_BUNDLE": bundle}
    return exp, ids, env


def replay_run(exp, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(exp.store)
    replays = client.search_runs([client.get_run(run_id).info.experiment_id],
                                 f"tags.`envlock.replay_of` = '{run_id}'",
                                 order_by=["attributes.start_time DESC"])
    return {"tags": replays[0].data.tags, "status": replays[0].info.status,
            "metrics": replays[0].data.metrics}


def test_a_captured_run_replays_on_slurm_with_podman_and_reproduces(runs):
    exp, ids, env = runs
    dry = exp.envlock("replay", ids["ok"], "--on", "slurm", "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    image = replay_image(exp, ids["ok"])
    assert f"podman pull --quiet --tls-verify=false {image}" in dry.stdout
    assert "#SBATCH --partition=debug" in dry.stdout and "--network=none" in dry.stdout
    pinned = exp.root.parent / "extra.csv"
    assert f":{pinned}:ro" in dry.stdout  # the input, bound read-only from the shared cache

    result = exp.envlock("replay", ids["ok"], "--on", "slurm", **env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained: w=" in result.stdout  # the job's output, streamed
    assert "input-read-only" in result.stdout  # the pinned copy, not the changed file
    assert pinned.read_text() == "changed\n"
    assert "REPRODUCED" in result.stdout and "on slurm (job " in result.stdout
    replay = replay_run(exp, ids["ok"])
    tags = replay["tags"]
    assert replay["status"] == "FINISHED" and tags["envlock.verdict"] == "reproduced"
    assert tags["envlock.replayed_on"] == "slurm" and tags["envlock.slurm.job_id"].isdigit()
    assert tags["envlock.slurm.node"] == socket.gethostname().split(".")[0]
    assert tags["envlock.slurm.partition"] == "debug"
    assert tags["envlock.slurm.exit_reason"].startswith("exit")
    assert "loss" in replay["metrics"]  # relayed from the job's store
    assert slurm.queue() == []


def replay_image(exp, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(exp.store).get_run(run_id).data.tags["envlock.image"]


def test_a_sweep_is_one_job_array_with_drift_and_a_cluster_failure(runs, tmp_path):
    """Six runs: four reproduce, one drifted, one timing out (a cluster failure, retried)."""
    exp, ids, env = runs
    junit = tmp_path / "sweep.xml"
    order = [ids["ok"], ids["ok1"], ids["drift"], ids["ok2"], ids["slow"], ids["ok3"]]
    result = exp.envlock("verify", *order, "--on", "slurm", "--parallel", "3",
                         "--timeout", "25", "--junit", str(junit), "--json", **env)
    assert result.returncode == 2, result.stderr[-3000:]  # a cluster failure: not drift
    items = {i["run_id"]: i for i in json.loads(result.stdout)["result"]["runs"]}
    verdicts = [items[r]["verdict"] for r in order]
    assert verdicts == ["reproduced", "reproduced", "not reproduced", "reproduced",
                        "cluster failure", "reproduced"]
    drift = items[ids["drift"]]["replay"]
    assert "loss" in json.dumps(drift["comparison"])
    assert isinstance(drift["explanations"], list)  # why, ranked, as a local replay's
    tags = replay_run(exp, ids["drift"])["tags"]
    assert tags["envlock.verdict"] == "not reproduced" and tags["envlock.explanation"]
    slow = items[ids["slow"]]
    assert slow["attempts"] == 2 and "timeout" in slow["cluster_failure"]
    jobs = {items[r]["replay"]["job"] for r in order if r != ids["slow"]}
    assert len(jobs) == 1  # one array
    heard = [line.split()[0] for line in result.stderr.splitlines()
             if line.startswith(("reproduced", "not", "cluster"))]
    assert len(heard) == 6  # each told as its task ended
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == 6
    assert sum(1 for case in cases if case.find("failure") is None
               and case.find("error") is None) == 4  # the drifted and the timed-out: not
    assert slurm.queue() == []


def test_a_captured_run_replays_on_slurm_with_charliecloud_and_reproduces(runs):
    exp, ids, env = runs
    # ch-image runs on `python3` from PATH: Debian's, which has its modules (lark)
    env = {**env, "PATH": f"/usr/bin:{os.environ['PATH']}"}
    dry = exp.envlock("replay", ids["ok1"], "--on", "slurm", "--runtime", "charliecloud",
                      "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    assert "ch-image --no-cache --tls-no-verify pull" in dry.stdout
    result = exp.envlock("replay", ids["ok1"], "--on", "slurm", "--runtime", "charliecloud",
                         **env)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert "REPRODUCED" in result.stdout and "on slurm (job " in result.stdout
    replay = replay_run(exp, ids["ok1"])
    assert replay["tags"]["envlock.verdict"] == "reproduced"
    assert replay["tags"]["envlock.replayed_on"] == "slurm" and "loss" in replay["metrics"]
    stored = Path(env["CH_IMAGE_STORAGE"]) / "img"
    assert [p.name for p in stored.iterdir()] == [
        "envlock-" + replay_image(exp, ids["ok1"]).rpartition(":")[2][:16]]
    assert slurm.queue() == []


def test_ctrl_c_cancels_the_job_and_leaves_nothing_queued(runs):
    exp, ids, env = runs
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "envlock"), "replay", ids["slow"],
                             "--on", "slurm"], cwd=exp.root,
                            env={**os.environ, **exp.env(), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(line.endswith("RUNNING") for line in slurm.queue()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.3)
    time.sleep(2)  # the container is starting or started
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert slurm.queue() == []
    left = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60).stdout
    assert "envlock-" not in left
    replay = replay_run(exp, ids["slow"])
    assert replay["status"] == "FAILED"


def test_slurm_errors_are_one_line_with_what_to_do(runs, tmp_path):
    exp, ids, env = runs
    refused = exp.envlock("replay", ids["ok"], "--on", "slurm", "--partition", "nosuch", **env)
    assert refused.returncode == 2
    assert "Slurm refused the job: Invalid partition name specified" in refused.stderr
    assert "sinfo" in refused.stderr and slurm.queue() == []
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "python3"):
        os.symlink(shutil.which(tool), bare / tool)
    missing = exp.envlock("replay", ids["ok"], "--on", "slurm", PATH=str(bare), **env)
    assert missing.returncode == 2
    assert "no `sbatch` on PATH" in missing.stderr
