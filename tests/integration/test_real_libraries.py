"""Runs made with the real libraries people train with, captured and replayed in real
containers through the real engine, registry and MLflow (SQLite store):

- a Hugging Face ``Trainer`` run (tests/experiments/hf_trainer.py) that loads a tiny BERT
  by name, ``from_pretrained("org/tiny-bert")``, from a hub cache the test writes in the
  hub's layout with safetensors weights, offline. The snapshot is pinned as an input;
  the host's cache is then deleted, and ``envlock replay`` with no ``--mount`` reproduces
  it from the pinned copy, by default with no ``--metric``: transformers' MLflow callback
  logs ``train_runtime``, ``*_per_second`` and ``eval_runtime``, shown but not gated.
  ``verify --strict`` gates them and fails, naming them.
- a Lightning fit (tests/experiments/lightning_fit.py) logged by Lightning's own
  ``MLFlowLogger`` with its ``ModelCheckpoint`` checkpoint as an artifact: replayed with
  ``--compare-artifacts``, the ``.ckpt`` differs by sha256 and the verdict says why —
  identical weights, and which metadata keys (the callback's absolute paths) differ.

Both use the session's torch venv (conftest's ``torch_venv``: torch 2.13.0 CPU,
transformers, accelerate, Lightning) and capture into its one environment image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, init_repo
from tests.integration.conftest import TORCH_REPO, Experiment, strict_differences

EXPERIMENTS = ROOT / "tests" / "experiments"
COMMIT = "5e1f3c0a0b1d2e3f405162738495a6b7c8d9e0f1"  # the snapshot's commit in the cache
#: What transformers' MLflow callback logs that measures time or throughput.
TIMING = {"train_runtime", "train_samples_per_second", "train_steps_per_second",
          "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"}

#: Writes a tiny BERT (2 layers, hidden size 32, seeded) with ``save_pretrained``
#: (safetensors) into the hub cache CACHE as the hub lays it out: blobs named by sha256,
#: the snapshot COMMIT of relative links to them, refs/main naming COMMIT.
MAKE_HUB = """
import hashlib, os, sys, tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

cache, commit = Path(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=2)
folder = cache / "models--org--tiny-bert"
snapshot = folder / "snapshots" / commit
snapshot.mkdir(parents=True)
(folder / "blobs").mkdir()
with tempfile.TemporaryDirectory() as saved:
    BertForSequenceClassification(config).save_pretrained(saved, safe_serialization=True)
    for name in sorted(os.listdir(saved)):
        body = Path(saved, name).read_bytes()
        blob = folder / "blobs" / hashlib.sha256(body).hexdigest()
        blob.write_bytes(body)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
(folder / "refs").mkdir()
(folder / "refs" / "main").write_text(commit)
"""


def project(root: Path, script: str, python: Path, ignore: str) -> Experiment:
    """tests/experiments/SCRIPT as ``train.py`` of a git project of its own."""
    init_repo(root, {"train.py": (EXPERIMENTS / script).read_text(),
                     ".gitignore": f"mlflow.db\n.envlock/\nmlruns/\n{ignore}"})
    return Experiment(root=root, python=python, store=f"sqlite:///{root.parent}/mlflow.db")


# ---------------------------------------------------------------- Hugging Face Trainer

@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, torch_venv, infra, created_images):
    """The Trainer run, trained on the host from a hub cache the test wrote, and captured
    with the hub snapshot it loaded pinned (copied to the registry)."""
    base = tmp_path_factory.mktemp("hf")
    cache = base / "hub"
    made = subprocess.run([str(torch_venv), "-c", MAKE_HUB, str(cache), COMMIT],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    exp = project(base / "proj", "hf_trainer.py", torch_venv, "outputs/\n")
    out = subprocess.run([str(torch_venv), "train.py"], cwd=exp.root, capture_output=True,
                         text=True, timeout=600,
                         env={**os.environ, **exp.env(HF_HUB_CACHE=str(cache),
                                                      HF_HUB_OFFLINE="1")})
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.split("trained ")[1].split()[0]
    snapshot = cache / "models--org--tiny-bert" / "snapshots" / COMMIT
    payload = exp.capture(run_id, infra, created_images, "--registry",
                          f"{infra.registry}/{TORCH_REPO}", "--input", str(snapshot))
    return exp, run_id, cache, payload


def test_a_trainer_run_replays_from_its_pinned_hub_model_timings_shown_not_gated(hf_run):
    exp, run_id, cache, payload = hf_run
    [pinned] = payload["inputs"]["inputs"]
    folder = str(cache / "models--org--tiny-bert")
    assert (pinned["path"], pinned["kind"], pinned["carry"]) == (folder, "hub-model", "copy")
    assert payload["inputs"]["pushed_bytes"] > 0
    lock = yaml.safe_load((exp.root / ".envlock" / "runs" / run_id / "envlock.lock.yaml")
                          .read_text())
    [model] = lock["inputs"]
    assert model["hub"] == {"repo": "org/tiny-bert", "type": "model", "revision": COMMIT,
                            "refs": "main"}
    weights = cache / "models--org--tiny-bert" / "snapshots" / COMMIT / "model.safetensors"
    assert {f["path"]: f["sha256"] for f in model["files"]}[
        f"snapshots/{COMMIT}/model.safetensors"] == hashlib.sha256(
        weights.read_bytes()).hexdigest()
    logged = MlflowClient(exp.store).get_run(run_id).data.metrics
    assert set(logged) >= TIMING and "eval_loss" in logged  # transformers' own callback

    shutil.rmtree(cache)  # the host's hub cache is gone
    replayed = exp.envlock("replay", run_id)  # no --mount, no --metric
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    text = replayed.stdout
    assert "REPRODUCED" in text and "NOT REPRODUCED" not in text, text[-3000:]
    assert "not gated (time, throughput or the machine" in text
    block = text[text.index("not gated (time"):]
    for name in TIMING:
        assert f"{name} " in block, (name, block[:2000])
    gated = [line.split()[0] for line in text[:text.index("not gated (time")].splitlines()
             if line.split() and line.split()[0] in {"eval_loss", "train_loss", "loss"}]
    assert {"eval_loss", "train_loss", "loss"} <= set(gated), text[:3000]


def test_strict_fails_the_trainer_run_naming_the_timing_metrics_that_differ(hf_run):
    exp, run_id, _cache, _payload = hf_run
    verified = exp.envlock("verify", run_id, "--strict")
    named = strict_differences(verified)
    assert "train_runtime" in named and named <= TIMING, named  # wall clock, nothing else


# ---------------------------------------------------------------- Lightning

def test_a_lightning_checkpoint_is_explained_as_identical_weights_with_other_paths(
        tmp_path, torch_venv, infra, created_images):
    # Lightning keeps its checkpoints in EXPERIMENT_ID/RUN_ID/checkpoints of the project
    exp = project(tmp_path / "proj", "lightning_fit.py", torch_venv, "/[0-9]*/\n")
    out = subprocess.run([str(torch_venv), "train.py"], cwd=exp.root, capture_output=True,
                         text=True, timeout=600, env={**os.environ, **exp.env()})
    assert out.returncode == 0, out.stderr[-3000:]
    run_id, best = out.stdout.split("fitted ")[1].split()[:2]
    assert best.startswith(f"{exp.root}/") and f"/{run_id}/checkpoints/" in best
    artifacts = [a.path for a in MlflowClient(exp.store).list_artifacts(run_id, "epoch=1-step=8")]
    assert "epoch=1-step=8/epoch=1-step=8.ckpt" in artifacts, artifacts  # log_model=True
    exp.capture(run_id, infra, created_images, "--registry", f"{infra.registry}/{TORCH_REPO}")

    replayed = exp.envlock("replay", run_id, "--compare-artifacts", "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    comparison = json.loads(replayed.stdout)["result"]["comparison"]
    assert all(m["ok"] for m in comparison["metrics"]), comparison["metrics"]
    rows = {a["path"]: a for a in comparison["artifacts"]}
    ckpt = rows["epoch=1-step=8/epoch=1-step=8.ckpt"]
    assert ckpt["status"] == "differs"
    callback = "callbacks.ModelCheckpoint{…}"
    assert ckpt["reason"] == (
        "identical weights (16 tensors); only metadata differs: "
        f"{callback}.best_k_models.<absolute path>, {callback}.best_model_path, "
        f"{callback}.dirpath, {callback}.kth_best_model_path"), ckpt
    others = {p: r["status"] for p, r in rows.items() if p != ckpt["path"]}
    assert set(others.values()) == {"identical"}, others  # aliases.txt, metadata.yaml
    assert comparison["reproduced"] is False  # an artifact differs, and the verdict says why
