"""Issue #24 on the live one-node cluster of ``scripts/k8s``: a two-process torchrun (gloo,
CPU) replays as a Job with no flag (the pod's hostname resolves through its hostAliases, as
a local replay's through extra_hosts), and --timeout becomes the pod's
activeDeadlineSeconds: the replay run FAILED with the reason, exit 124."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import init_repo
from tests.integration.conftest import TORCH_REPO, Experiment
from tests.integration.test_distributed import COMMAND, DDP_TRAIN, latest_run

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def ddp_on_server(tmp_path_factory, torch_venv, cluster_mlflow, infra, created_images
                  ) -> tuple[Experiment, str]:
    """The torchrun experiment, logged to the cluster's tracking server and captured."""
    root = tmp_path_factory.mktemp("kddp") / "exp"
    init_repo(root, {"train.py": DDP_TRAIN, ".gitignore": ".envlock/\n"})
    exp = Experiment(root=root, python=torch_venv, store=cluster_mlflow)
    trained = subprocess.run([str(torch_venv.with_name("torchrun")), "--standalone",
                              "--nproc_per_node", "2", "train.py"], cwd=root,
                             env={**os.environ, **exp.env()}, capture_output=True, text=True,
                             timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = latest_run(exp)
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{TORCH_REPO}",
                command=COMMAND)
    return exp, run_id


def test_torchrun_replays_as_a_job_with_no_flag(ddp_on_server, cluster):
    exp, run_id = ddp_on_server
    replayed = exp.envlock("replay", run_id, "--on", "kubernetes", "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    result = json.loads(replayed.stdout)["result"]
    assert result["comparison"]["reproduced"] is True
    assert all(m["delta"] == 0 for m in result["comparison"]["metrics"])
    assert "ddp trained" in replayed.stderr


def test_a_job_past_its_timeout_is_stopped_failed_and_exits_124(ddp_on_server, cluster):
    from mlflow.tracking import MlflowClient

    exp, run_id = ddp_on_server
    stopped = exp.envlock("replay", run_id, "--on", "kubernetes", "--command",
                          "echo waiting for the other rank; sleep 600", "--timeout", "40")
    assert stopped.returncode == 124, stopped.stderr[-3000:]
    assert "ran past its timeout of 40 s" in stopped.stderr
    assert "waiting for the other rank" in stopped.stderr
    replays = MlflowClient(exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    assert replays[0].info.status == "FAILED"
    assert "timeout of 40 s" in replays[0].data.tags["envlock.failure"]
