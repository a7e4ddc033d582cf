"""A project that is not a git repository (a notebook's scratch folder, a cluster home
directory): captured with its files by content, pushed to the real registry, recorded on a
real MLflow SQLite store and replayed in Docker with identical metrics."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from envlock.model import lockfile
from tests.integration.conftest import Experiment

REPO = f"tests/nongit-{uuid.uuid4().hex[:8]}"
SECRET = "WANDB_API_KEY=never-in-an-image-5f1c"

HELPERS = '''"""A local helper module: imported by train.py from the project directory."""


def fit(rows, lr, epochs):
    w = b = 0.0
    for _ in range(epochs):
        gw = sum(2 * (w * x + b - y) * x for x, y in rows) / len(rows)
        gb = sum(2 * (w * x + b - y) for x, y in rows) / len(rows)
        w, b = w - lr * gw, b - lr * gb
    loss = sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)
    return w, b, loss
'''

TRAIN = '''import csv

import mlflow

from helpers import fit

with open("data/points.csv") as handle:
    rows = [(float(x), float(y)) for x, y in csv.reader(handle)]

with mlflow.start_run():
    mlflow.log_params({"points": len(rows), "lr": 0.1, "epochs": 30})
    w, b, loss = fit(rows, 0.1, 30)
    mlflow.log_metrics({"w": w, "b": b, "loss": loss})
    print(f"trained: w={w:.6f} b={b:.6f} loss={loss:.6f}")
'''

POINTS = "".join(f"{x / 10},{3 * x / 10 + 1 + (x % 3) * 0.01}\n" for x in range(-10, 11))

FILES = {"train.py": TRAIN, "helpers.py": HELPERS, "data/points.csv": POINTS,
         ".envlockignore": "outputs/\n", ".env": SECRET + "\n",
         "outputs/checkpoint.bin": "weights " * 100}


def _not_in_a_repository(path: Path) -> None:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    assert out.returncode != 0, f"{path} is inside the git repository {out.stdout.strip()}"


@pytest.fixture(scope="module")
def plain_exp(tmp_path_factory, experiment_venv) -> Experiment:
    root = tmp_path_factory.mktemp("nongit") / "scratch"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _not_in_a_repository(root)
    # the store (and MLflow's ./mlruns) inside the project: local state, never code
    return Experiment(root=root, python=experiment_venv, store=f"sqlite:///{root}/mlflow.db")


@pytest.fixture(scope="module")
def captured(plain_exp, infra, created_images):
    run_id = plain_exp.train()
    payload = plain_exp.capture(run_id, infra, created_images, "--registry",
                                f"{infra.registry}/{REPO}")
    return run_id, payload


def _client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store)


def test_the_lock_lists_every_packed_file_with_its_sha256(plain_exp, captured):
    run_id, payload = captured
    lock = lockfile.load(payload["lockfile"])
    assert lock.git is None and lock.code["kind"] == "directory"
    assert lock.code["root"] == str(plain_exp.root.resolve())
    recorded = {f["path"]: f["sha256"] for f in lock.code["files"]}
    assert set(recorded) == {"train.py", "helpers.py", "data/points.csv", ".envlockignore"}
    for rel, digest in recorded.items():
        assert digest == "sha256:" + hashlib.sha256((plain_exp.root / rel).read_bytes()
                                                     ).hexdigest()
    assert lock.code["withheld"] == [".env"]
    assert SECRET not in Path(payload["lockfile"]).read_text()
    tags = _client(plain_exp.store).get_run(run_id).data.tags
    assert tags["envlock.code_kind"] == "directory" and tags["envlock.git_commit"] == "none"
    assert tags["envlock.image"] == payload["image"] and "@sha256:" in payload["image"]
    names = {a.path for a in _client(plain_exp.store).list_artifacts(run_id, "envlock")}
    assert {"envlock/envlock.lock.yaml", "envlock/files.txt"} <= names


def test_the_image_holds_the_code_but_no_secret_and_no_ignored_folder(captured,
                                                                      docker_client):
    _, payload = captured
    listing = docker_client.containers.run(
        payload["built"]["image_id"], ["sh", "-c", "cd /workspace && find . | sort; "
                                       "grep -r never-in-an-image . || echo no-secret"],
        entrypoint=[], remove=True).decode().splitlines()
    assert {"./train.py", "./helpers.py", "./data/points.csv", "./.envlockignore"} <= {*listing}
    assert "./.env" not in listing and "no-secret" in listing
    for left_out in ("./outputs", "./mlflow.db", "./mlruns", "./.envlock"):
        assert left_out not in listing


def test_replay_reproduces_the_metrics_exactly(plain_exp, captured):
    run_id, _ = captured
    result = plain_exp.envlock("replay", run_id, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)["result"]
    assert payload["comparison"]["reproduced"] is True
    metrics = {m["name"] for m in payload["comparison"]["metrics"]}
    assert metrics == {"w", "b", "loss"}
    assert all(m["delta"] == 0 for m in payload["comparison"]["metrics"])
    replay = _client(plain_exp.store).get_run(payload["replay_run_id"])
    assert replay.data.params["points"] == "21"


def test_show_summarizes_the_code_section(plain_exp, captured):
    run_id, _ = captured
    shown = plain_exp.envlock("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "4 files" in shown.stdout and "1 withheld" in shown.stdout


def test_over_the_size_cap_nothing_is_recorded(plain_exp, infra):
    run_id = plain_exp.train()
    result = plain_exp.envlock("capture", "--run-id", run_id, "--python",
                               str(plain_exp.python), "--base-image", infra.base_image,
                               "--code-max-size", "200", "--no-push")
    assert result.returncode == 2
    largest = max(("train.py", "helpers.py"), key=lambda f: len(FILES[f]))
    assert f"largest: {largest} (" in result.stderr and "data/points.csv" in result.stderr
    assert "add them to .envlockignore" in result.stderr
    assert not any(k.startswith("envlock.")
                   for k in _client(plain_exp.store).get_run(run_id).data.tags)


def test_a_rebuild_from_the_run_packs_the_same_code_image(plain_exp, captured, infra,
                                                          created_images):
    run_id, payload = captured
    result = plain_exp.envlock("build", "--from-run", run_id, "--registry",
                               f"{infra.registry}/{REPO}", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    rebuilt = json.loads(result.stdout)["result"]
    created_images.add(rebuilt["image"])
    assert rebuilt["code_digest"] == payload["built"]["code_digest"]
    assert rebuilt["image_matches_run"] is True


def test_a_file_edited_after_capture_stops_the_rebuild_naming_it(plain_exp, captured):
    run_id, _ = captured
    data = plain_exp.root / "data" / "points.csv"
    try:
        data.write_text(POINTS + "9,9\n")
        result = plain_exp.envlock("build", "--from-run", run_id, "--no-push")
    finally:
        data.write_text(POINTS)
    assert result.returncode == 2
    assert "data/points.csv" in result.stderr and "changed since" in result.stderr
    assert "capture again" in result.stderr


def test_check_reports_edited_files_as_code_and_fails_only_when_strict(plain_exp, captured):
    _, payload = captured
    args = ("check", "--lock", payload["lockfile"], "--python", str(plain_exp.python))
    same = plain_exp.envlock(*args)
    assert same.returncode == 0 and "code:" not in same.stdout, same.stdout + same.stderr
    helpers = plain_exp.root / "helpers.py"
    try:
        helpers.write_text(HELPERS + "# tuned by hand\n")
        loose = plain_exp.envlock(*args)
        strict = plain_exp.envlock(*args, "--strict")
    finally:
        helpers.write_text(HELPERS)
    assert loose.returncode == 0 and "code:" in loose.stdout and "helpers.py" in loose.stdout
    assert strict.returncode == 1
