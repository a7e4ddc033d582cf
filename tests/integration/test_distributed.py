"""Issue #24: multi-process training replays under the hardened default, a replay that hangs
is stopped by --timeout, and `verify` takes the container's settings from the project's
config. Real engine, registry, MLflow (SQLite) and PyTorch (the CPU build, gloo)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import init_repo
from tests.integration.conftest import TORCH_REPO, Experiment, make_experiment

#: Two processes (torchrun, gloo on CPU), a seeded linear model, a few steps of DDP; rank 0
#: logs the all-reduced loss of each step to MLflow.
DDP_TRAIN = '''\
import os
import sys

import mlflow
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.Generator().manual_seed(100 + rank)
    losses = []
    for _ in range(6):
        x = torch.randn(32, 8, generator=data)
        loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(float(total) / world)
    if rank == 0:
        with mlflow.start_run():
            mlflow.log_param("world_size", world)
            for step, value in enumerate(losses):
                mlflow.log_metric("loss", value, step=step)
            print("ddp trained", losses[-1], flush=True)
    # Both ranks leave together, and without running gloo's destructors: a rank tearing
    # gloo down while the other still talks to it can abort there ("terminate called without
    # an active exception", seen even after a barrier on a loaded machine). Rank 0's run has
    # ended above; nothing else is left to flush.
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
'''
COMMAND = "torchrun --standalone --nproc_per_node 2 train.py"


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, torch_venv, infra, created_images) -> tuple[Experiment, str]:
    """A two-process torchrun run, trained on the host and captured."""
    root = tmp_path_factory.mktemp("ddp") / "exp"
    init_repo(root, {"train.py": DDP_TRAIN, ".gitignore": "mlflow.db\n.envlock/\n"})
    exp = Experiment(root=root, python=torch_venv,
                     store=f"sqlite:///{root.parent}/mlflow.db")
    torchrun = torch_venv.with_name("torchrun")
    trained = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                              "train.py"], cwd=root, env={**os.environ, **exp.env()},
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = latest_run(exp)
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{TORCH_REPO}",
                command=COMMAND)
    return exp, run_id


def latest_run(exp: Experiment) -> str:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(exp.store).search_runs(["0"], order_by=["attributes.start_time DESC"],
                                               max_results=1)
    return runs[0].info.run_id


def run_of(exp: Experiment, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(exp.store).get_run(run_id)


def test_torchrun_replays_under_the_hardened_default_with_no_flag(ddp):
    exp, run_id = ddp
    replayed = exp.envlock("replay", run_id, "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    result = json.loads(replayed.stdout)["result"]
    assert result["comparison"]["reproduced"] is True
    [loss] = result["comparison"]["metrics"]
    assert loss["name"] == "loss" and loss["delta"] == 0
    assert "ddp trained" in replayed.stderr  # rank 0 ran to its end in the container
    replay = run_of(exp, result["replay_run_id"])
    assert replay.info.status == "FINISHED" and replay.data.params["world_size"] == "2"
    # the default really is --network none: no interface but loopback in the container
    probe = exp.envlock("replay", run_id, "--no-track", "--command",
                        "hostname; ls /sys/class/net; python -c 'import socket; "
                        "print(socket.gethostbyname(socket.gethostname()))'")
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split()[:3] == ["envlock-replay", "lo", "127.0.0.1"]


def test_verify_runs_the_ddp_replay(ddp, tmp_path):
    exp, run_id = ddp
    verified = exp.envlock("verify", run_id, "--junit", str(tmp_path / "verify.xml"))
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert verified.stdout.startswith("REPRODUCED")


def test_a_replay_past_its_timeout_is_stopped_failed_and_exits_124(ddp):
    exp, run_id = ddp
    hang = "echo waiting for the other rank; sleep 300"
    stopped = exp.envlock("replay", run_id, "--command", hang, "--timeout", "5s")
    assert stopped.returncode == 124, stopped.stderr[-3000:]
    [line] = [x for x in stopped.stderr.splitlines() if x.startswith("envlock: error:")]
    assert "ran past its timeout of 5 s" in line
    assert "its last output lines: waiting for the other rank" in line  # what it waited on
    from mlflow.tracking import MlflowClient

    replays = MlflowClient(exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    tags = replays[0].data.tags
    assert replays[0].info.status == "FAILED" and tags["envlock.verdict"] == "timed out"
    assert "timeout of 5 s" in tags["envlock.failure"]
    # the config's timeout applies to verify alike (and the flag would win over it)
    (exp.root / "envlock.yaml").write_text(f"timeout: 3\ncommand: {hang!r}\n")
    try:
        verified = exp.envlock("verify", run_id)
    finally:
        (exp.root / "envlock.yaml").unlink()
    assert verified.returncode == 124, verified.stderr[-3000:]
    assert "timeout of 3 s" in verified.stderr


#: Reads its input from a directory that is only there when mounted (/data by default).
DATA_TRAIN = '''\
import os
from pathlib import Path

import mlflow

numbers = Path(os.environ.get("DATA", "/data"), "numbers.txt").read_text().split()
with mlflow.start_run():
    mlflow.log_metric("total", sum(map(float, numbers)))
'''


def test_verify_takes_a_mount_and_env_from_the_config_alone(tmp_path, experiment_venv, infra,
                                                            created_images):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # read by the container's user (uid 1000)
    (data / "numbers.txt").write_text("1.5 2.5 4\n")
    exp = make_experiment(tmp_path / "exp", experiment_venv, f"sqlite:///{tmp_path}/mlflow.db")
    (exp.root / "train.py").write_text(DATA_TRAIN)
    run_id = _train_with(exp, DATA=str(data))
    exp.capture(run_id, infra, created_images, "--no-push")
    without = exp.envlock("verify", run_id)
    assert without.returncode == 1 and "numbers.txt" in without.stderr  # the input is missing
    (exp.root / "envlock.yaml").write_text(
        f"mounts:\n  - {data}:/input:ro\nenv:\n  - DATA=/input\n")
    verified = exp.envlock("verify", run_id, "--json")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert json.loads(verified.stdout)["result"]["reproduced"] is True
    shown = exp.envlock("config", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "mounts" in shown.stdout and "/input:ro" in shown.stdout


def _train_with(exp: Experiment, **env: str) -> str:
    out = subprocess.run([str(exp.python), "train.py"], cwd=exp.root,
                         env={**os.environ, **exp.env(), **env}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return latest_run(exp)


def test_config_values_of_the_container_are_checked(tmp_path, experiment_venv):
    exp = make_experiment(tmp_path / "exp", experiment_venv, f"sqlite:///{tmp_path}/mlflow.db")
    (exp.root / "envlock.yaml").write_text("timeout: forever\n")
    refused = exp.envlock("verify", "f" * 32)
    assert refused.returncode == 2
    assert "timeout: --timeout 'forever' is not a duration" in refused.stderr
