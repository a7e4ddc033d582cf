"""Issue #10: a PyTorch DataLoader with worker processes and image batches (150+ MB in
flight) runs on the host but dies in a container with Docker's 64 MB /dev/shm. The lock
records the host's /dev/shm; the replay gives the container at least as much, and
records the replay host on the replay run. Real engine, registry, MLflow and PyTorch
(CPU build)."""

from __future__ import annotations

import json

from tests.conftest import init_repo
from tests.integration.conftest import TORCH_REPO, Experiment

#: Two workers, prefetch 2, batches of 16 images 3x512x512 float32 (50 MB each): about
#: 200 MB of batches in shared memory at once. Six batches: a few seconds on 2 cores.
TRAIN = '''\
import mlflow
import torch
from torch.utils.data import DataLoader, Dataset


class Images(Dataset):
    def __len__(self):
        return 96

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return torch.rand(3, 512, 512, generator=generator), index % 10


def main():
    loader = DataLoader(Images(), batch_size=16, num_workers=2, prefetch_factor=2)
    total, batches = 0.0, 0
    with mlflow.start_run():
        for images, _ in loader:
            total += float(images.double().mean())
            batches += 1
        mlflow.log_metric("pixel_mean", total / batches)
        mlflow.log_metric("batches", batches)


if __name__ == "__main__":
    main()
'''


def test_dataloader_workers_need_the_original_shm_and_the_replay_host_is_recorded(
        tmp_path, infra, created_images, torch_venv):
    root = init_repo(tmp_path / "loader", {"train.py": TRAIN,
                                           ".gitignore": "mlflow.db\n.envlock/\n"})
    exp = Experiment(root=root, python=torch_venv, store=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = exp.train()
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{TORCH_REPO}")
    lock = json.loads(exp.envlock("show", run_id, "--json").stdout)["result"]
    assert lock["host"]["shm"]["size_bytes"] > 256 << 20  # the host's /dev/shm, recorded

    # Docker's default-sized /dev/shm: the workers cannot hand over their batches.
    small = exp.envlock("replay", run_id, "--shm-size", "64m", "--json")
    assert small.returncode != 0
    # torch 2.13's words, as in the issue
    assert "unable to allocate shared memory(shm)" in small.stderr, small.stderr[-3000:]
    assert "No space left on device" in small.stderr
    failed = json.loads(small.stdout)["result"]
    assert failed["resources"]["shm_size"] == 64 << 20
    assert run_tags(exp, failed["replay_run_id"])["envlock.verdict"] == "not reproduced"

    # Limits the engine cannot give: one line, exit 2, the replay run marked FAILED.
    greedy = exp.envlock("replay", run_id, "--cpus", "4096")
    assert greedy.returncode == 2
    assert ("envlock: error: the Docker engine refused creating the replay container"
            in greedy.stderr)
    assert "--cpus" in greedy.stderr and "Traceback" not in greedy.stderr

    # envlock's default: /dev/shm as large as on the original host.
    full = exp.envlock("replay", run_id, "--json")
    assert full.returncode == 0, full.stderr[-3000:]
    result = json.loads(full.stdout)["result"]
    assert result["comparison"]["reproduced"] is True
    assert result["resources"]["shm_size"] == lock["host"]["shm"]["size_bytes"]
    replay_id = result["replay_run_id"]

    tags = run_tags(exp, replay_id)
    assert tags["envlock.verdict"] == "reproduced"
    assert tags["envlock.replay_host.shm_size"] == str(lock["host"]["shm"]["size_bytes"])
    assert tags["envlock.replay_host.engine"].startswith("docker ")
    assert tags["envlock.replay_host.isa_level"] == lock["host"]["cpu"]["isa_level"]
    for key in ("cpu", "cores", "gpu", "driver", "os"):
        assert tags[f"envlock.replay_host.{key}"], key
    from mlflow.tracking import MlflowClient

    listed = MlflowClient(exp.store).list_artifacts(replay_id, "envlock")
    assert "envlock/replay-host.yaml" in {a.path for a in listed}

    diff = exp.envlock("diff", run_id, replay_id, "--json")
    assert diff.returncode in (0, 1), diff.stderr
    shown = json.loads(diff.stdout)["result"]
    assert shown["kind"] == "replay-host" and shown["verdict"] == "reproduced"
    assert shown["replay_of"] == run_id
    assert shown["identical"] is (diff.returncode == 0)
    failed_diff = json.loads(exp.envlock("diff", run_id, failed["replay_run_id"],
                                         "--json").stdout)["result"]
    assert failed_diff["verdict"] == "not reproduced"
    assert failed_diff["resources"]["shm_size"] == 64 << 20


def run_tags(exp: Experiment, run_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return dict(MlflowClient(exp.store).get_run(run_id).data.tags)
