"""Runs shaped as a new user makes them, end to end through the real engine, registry and
MLflow: an Optuna search (Optuna from PyPI) whose trials are nested MLflow runs, some of
them pruned, which MLflow ends FAILED. Its replay reproduces with every child's status
compared; a replay given another pruning threshold names the trials whose status changed.
And a checkpoint saved by real PyTorch in PyTorch Lightning's layout, in two folders as an
original and its replay save it: identical weights, and only the callback state holding
absolute paths and the run id differs, which is what the explanation says."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.integration.conftest import captured_search


@pytest.fixture(scope="module")
def study(tmp_path_factory, infra, created_images, search_venv):
    """tests/experiments/optuna_search.py trained on the host and captured (no run id:
    capture must pick the study's parent run, not the last trial). The venv and its
    environment image are the session's searches' (conftest's ``search_venv``)."""
    exp, run_id = captured_search(tmp_path_factory.mktemp("optuna"), "optuna_search.py",
                                  search_venv, infra, created_images)
    run = MlflowClient(exp.store).get_run(run_id)
    assert run.info.run_name == "study" and "mlflow.parentRunId" not in run.data.tags
    return exp, run_id


def trial_statuses(store: str, run_id: str) -> dict[str, str]:
    """Each trial's child run name -> the status MLflow recorded for it."""
    client = MlflowClient(store)
    kids = client.search_runs([client.get_run(run_id).info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    return {kid.info.run_name: kid.info.status for kid in kids}


def test_a_study_with_pruned_trials_reproduces_each_trials_status_compared(study):
    exp, run_id = study
    original = trial_statuses(exp.store, run_id)
    assert len(original) == 8 and "FAILED" in original.values() \
        and "FINISHED" in original.values(), original  # pruned trials end FAILED
    verified = exp.envlock("verify", run_id, "--json")
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    result = json.loads(verified.stdout)["result"]
    comparison = result["comparison"]
    assert comparison["reproduced"] is True, comparison
    rows = {r["name"]: r for r in comparison["runs"]}
    assert {name: r["status"]["original"] for name, r in rows.items()} == original
    assert all(r["status"]["replay"] == r["status"]["original"] and r["ok"]
               and r["matched_by"] == "name+params" for r in rows.values()), rows
    assert trial_statuses(exp.store, result["replay_run_id"]) == original
    pruned = sum(1 for status in original.values() if status == "FAILED")
    best = next(m for m in comparison["metrics"] if m["name"] == "best_loss")
    assert best["ok"] and best["original"] == best["replay"]
    assert next(m["replay"] for m in comparison["metrics"]
                if m["name"] == "pruned_trials") == pruned


def test_another_pruning_threshold_names_the_trials_whose_status_changed(study):
    exp, run_id = study
    original = trial_statuses(exp.store, run_id)
    replayed = exp.envlock("replay", run_id, "--env", "PRUNE_ABOVE=3")
    assert replayed.returncode == 0, replayed.stderr[-3000:]  # the study itself ran
    text = replayed.stdout
    assert "NOT REPRODUCED" in text and "child runs: 8 in the original, 8 in the replay" in text
    changed = [line.split()[0] for line in text.splitlines()
               if "FINISHED -> FAILED (DIFFERS)" in line]
    assert changed, text[-3000:]  # a trial finished in the original is pruned now
    assert all(original[name] == "FINISHED" for name in changed), (changed, original)
    assert "PRUNE_ABOVE: original not recorded, replay 3" in text  # explained
    replay_id = MlflowClient(exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'",
        order_by=["attributes.start_time DESC"])[0].info.run_id
    now = trial_statuses(exp.store, replay_id)
    assert sorted(n for n in now if now[n] != original[n]) == sorted(changed)


#: Saves a checkpoint as PyTorch Lightning 2.x lays it out (its ModelCheckpoint state under
#: the callback's long state key, scores as tensors, ``best_k_models`` keyed by absolute
#: path, hyper-parameters with the run id) from a seeded model trained one step, into
#: ``FOLDER/checkpoints``; BUMP changes one weight. Then prints envlock's explanations
#: (envlock.model.checkpoints, importable from the checkout) of two pairs of them.
SAVE_AND_EXPLAIN = """
import json, os, sys
import torch
from envlock.model.checkpoints import explain

KEY = ("ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, "
       "'every_n_epochs': 1, 'train_time_interval': None}")


def save(folder, run_id, bump=0.0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model[0].weight[0, 0] += bump
    dirpath = os.path.abspath(os.path.join(folder, "checkpoints"))
    best, score = os.path.join(dirpath, "epoch=0-step=1.ckpt"), loss.detach()
    state = {"monitor": "val_loss", "best_model_score": score, "best_model_path": best,
             "current_score": score, "dirpath": dirpath, "best_k_models": {best: score},
             "kth_best_model_path": best, "kth_value": score, "last_model_path": ""}
    os.makedirs(dirpath)
    torch.save({"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.5.1",
                "state_dict": model.state_dict(), "callbacks": {KEY: state},
                "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 1}}}},
                "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [],
                "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.01, "run_id": run_id}},
               best)
    with open(best, "rb") as handle:
        return handle.read()


original = save(sys.argv[1], "0a1b2c")
replay = save(sys.argv[2], "3d4e5f")
changed = save(sys.argv[3], "0a1b2c", bump=0.25)
print(json.dumps({"same_bytes": original == replay,
                  "replay": explain("epoch=0-step=1.ckpt", original, replay),
                  "changed": explain("epoch=0-step=1.ckpt", original, changed)}))
"""


def test_a_lightning_checkpoint_with_callback_paths_is_explained_as_identical_weights(
        torch_venv, tmp_path):
    folders = [str(tmp_path / name) for name in ("home/me/project", "work", "other")]
    out = subprocess.run([str(torch_venv), "-c", SAVE_AND_EXPLAIN, *folders],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout)
    assert found["same_bytes"] is False  # the file "differs" by sha256
    callback = "callbacks.ModelCheckpoint{…}"
    assert found["replay"] == (
        "identical weights (16 tensors); only metadata differs: "
        f"{callback}.best_k_models.<absolute path>, {callback}.best_model_path, "
        f"{callback}.dirpath, {callback}.kth_best_model_path, hyper_parameters.run_id")
    assert found["changed"].startswith(
        "1 of 16 tensors differ: state_dict.0.weight (max |Δ| 0.25); metadata differs: "
        f"{callback}.best_k_models.<absolute path>, "), found["changed"]
