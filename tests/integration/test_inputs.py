"""Inputs a run read, pinned at capture and given back to its replay: git-ignored data
declared in ``[tool.envlock]``, an absolute path on the command line; real git, MLflow
(SQLite store), engine and registry.

Run A is captured with the default carry (copies pushed to the registry); the host's data
is then changed and deleted, and ``envlock replay`` still reproduces it from the pinned
copies, with no --mount. Run B is captured with a copy cap that references the absolute
input: its second capture of the same data pushes 0 input bytes, and once that input
changes its replay stops before running (exit 2), naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import init_repo
from tests.integration.conftest import Experiment

REPO = f"tests/inputs-{uuid.uuid4().hex[:8]}"

TRAIN = """import argparse
import hashlib
import json
import os

import mlflow
from mlflow.entities import Dataset, DatasetInput

parser = argparse.ArgumentParser()
parser.add_argument("--data")
args = parser.parse_args()
rows = [float(x) for x in open("data/train.csv").read().split()]
extra = [float(x) for x in open(args.data).read().split()]
ds = open("data/ds.csv", "rb").read()
with mlflow.start_run() as run:
    # what mlflow.log_input(mlflow.data.from_pandas(df, source=PATH)) records
    mlflow.MlflowClient().log_inputs(run.info.run_id, [DatasetInput(Dataset(
        name="ds", digest=hashlib.md5(ds).hexdigest()[:8], source_type="local",
        source=json.dumps({"uri": os.path.abspath("data/ds.csv")})))])
    mlflow.log_metric("rows", len(rows))
    mlflow.log_metric("total", sum(rows) + sum(extra) + len(ds))
print("trained on", len(rows), "rows")
"""

PYPROJECT = '[tool.envlock]\ninputs = ["data/train.csv"]\n'


@pytest.fixture(scope="module")
def setup(tmp_path_factory, experiment_venv, infra, created_images):
    base = tmp_path_factory.mktemp("inputs")
    root = init_repo(base / "exp", {
        "train.py": TRAIN, "pyproject.toml": PYPROJECT,
        ".gitignore": "mlflow.db\nmlruns/\n.envlock/\ndata/\n"})
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("1\n2\n3\n")
    (root / "data" / "unused.parquet").write_bytes(b"PAR1")
    (root / "data" / "ds.csv").write_text("x\n" * 100)
    shared = base / "shared"
    shared.mkdir()
    extra = shared / "extra.csv"
    extra.write_text("10\n20\n" * 50)
    exp = Experiment(root=root, python=experiment_venv, store=f"sqlite:///{base}/mlflow.db")
    cache = str(base / "cache")
    command = f"python train.py --data {extra}"

    def capture(run_id: str, *args: str, **env: str) -> dict:
        result = exp.envlock("capture", "--run-id", run_id, "--python", str(exp.python),
                             "--command", command, "--base-image", infra.base_image,
                             "--registry", f"{infra.registry}/{REPO}", "--json", *args,
                             ENVLOCK_CACHE=cache, **env)
        assert result.returncode == 0, result.stderr[-3000:]
        payload = json.loads(result.stdout)["result"]
        created_images.update({payload["built"]["image"], payload["built"]["env_image"]})
        return {**payload, "stderr": result.stderr}

    run_a = exp.train("--data", str(extra))
    captured_a = capture(run_a)
    run_b = exp.train("--data", str(extra))
    captured_b = capture(run_b, ENVLOCK_INPUTS_COPY_MAX="100")
    return {"exp": exp, "extra": extra, "cache": cache, "a": (run_a, captured_a),
            "b": (run_b, captured_b), "capture": capture}


def test_capture_pins_declared_and_command_line_inputs_and_warns_of_unpinned_data(setup):
    run_id, payload = setup["a"]
    pinned = {i["path"]: i for i in payload["inputs"]["inputs"]}
    extra = str(setup["extra"].resolve())
    assert set(pinned) == {"data/train.csv", "data/ds.csv", extra}
    assert pinned["data/train.csv"]["sources"] == ["config"]
    assert pinned["data/ds.csv"]["sources"] == ["mlflow"]
    assert pinned[extra]["sources"] == ["command"]
    assert {i["carry"] for i in pinned.values()} == {"copy"}
    assert payload["inputs"]["pushed_bytes"] == 6 + 300 + 200
    assert payload["tags"]["envlock.inputs"].startswith(payload["image"].split("@")[0] + "@")
    assert "git-ignored data not pinned: data/unused.parquet" in payload["stderr"]
    assert "--input data/unused.parquet" in payload["stderr"]


def test_a_second_capture_of_the_same_inputs_pushes_no_input_bytes(setup):
    _run_id, payload = setup["b"]
    assert payload["inputs"]["pushed_bytes"] == 0
    carry = {i["path"]: i["carry"] for i in payload["inputs"]["inputs"]}
    assert carry == {"data/train.csv": "copy", "data/ds.csv": "reference",
                     str(setup["extra"].resolve()): "reference"}
    assert "is referenced, not copied" in payload["stderr"]


def test_replay_restores_copied_inputs_after_the_host_data_changed_and_was_deleted(setup):
    exp, extra = setup["exp"], setup["extra"]
    run_a, _ = setup["a"]
    original = extra.read_text()
    (exp.root / "data" / "train.csv").write_text("100\n")
    (exp.root / "data" / "ds.csv").write_text("changed\n")
    extra.unlink()
    try:
        result = exp.envlock("replay", run_a, "--json", ENVLOCK_CACHE=setup["cache"])
        assert result.returncode == 0, result.stderr[-3000:]
        payload = json.loads(result.stdout)["result"]
        assert payload["comparison"]["reproduced"] is True, payload["comparison"]
        assert "trained on 3 rows" in result.stderr

        run_b, _ = setup["b"]
        refused = exp.envlock("replay", run_b, ENVLOCK_CACHE=setup["cache"])
        assert refused.returncode == 2, refused.stderr
        assert f"{extra.resolve()}: missing" in refused.stderr
        assert "--allow-changed-inputs" in refused.stderr
        assert "trained" not in refused.stderr  # stopped before the experiment ran

        extra.write_text("11\n")
        allowed = exp.envlock("replay", run_b, "--allow-changed-inputs",
                              ENVLOCK_CACHE=setup["cache"])
        assert allowed.returncode == 0, allowed.stderr[-3000:]  # the experiment ran
        assert "NOT REPRODUCED" in allowed.stdout  # on other data
        said = allowed.stdout.splitlines()
        said = said[next(i for i, line in enumerate(said) if line.startswith("replay of")):]
        assert said[1].startswith(f"input changed: {extra.resolve()}: changed (size 300 → 3")
        assert said[2].startswith("input changed: data/ds.csv: changed")
        assert said[3].startswith("input changed: MLflow dataset ds: digest ")
        lineage = exp.envlock("lineage", run_b)
        assert "inputs      3 (1 copy, 2 reference)" in lineage.stdout
        assert "inputs changed: " in lineage.stdout
    finally:
        extra.write_text(original)
        (exp.root / "data" / "train.csv").write_text("1\n2\n3\n")
        (exp.root / "data" / "ds.csv").write_text("x\n" * 100)


AUTOLOGGED = """import os

import envlock
import mlflow

envlock.autolog(build=False)
config = open("conf.yaml").read()  # tracked code: not an input
rows = open("data/train.csv").read().split()  # git-ignored, never declared
extra = open(os.environ["EXTRA"], "rb").read()  # outside the project, not on the command line
# a pretrained model from the hub cache, offline; safetensors mmaps it (not seen by the hook)
from huggingface_hub import hf_hub_download
from safetensors.numpy import load_file

weights = load_file(hf_hub_download("org/tiny", "model.safetensors", local_files_only=True))
config = open(hf_hub_download("org/tiny", "config.json", local_files_only=True)).read()
with mlflow.start_run() as run:
    with open("ckpt.bin", "wb") as out:
        out.write(b"weights")
    open("ckpt.bin", "rb").read()  # written by the run, then read: an output
    mlflow.log_metric("rows", len(rows))
print(run.info.run_id)
"""


def test_autolog_pins_the_files_the_run_read_and_not_what_it_wrote(tmp_path):
    import subprocess
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    root = init_repo(tmp_path / "auto", {"train.py": AUTOLOGGED, "conf.yaml": "lr: 1\n",
                                        ".gitignore": "data/\nmlflow.db\n.envlock/\n"})
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("1\n2\n")
    extra = tmp_path / "shared" / "extra.bin"
    extra.parent.mkdir()
    extra.write_bytes(b"\x00" * 64)
    model = write_hub_model(tmp_path / "hub")
    store = f"sqlite:///{tmp_path}/mlflow.db"
    out = subprocess.run([sys.executable, "train.py"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "MLFLOW_TRACKING_URI": store, "EXTRA": str(extra),
                              "ENVLOCK_CACHE": str(tmp_path / "cache"),
                              "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"},
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.strip().splitlines()[-1]
    client = MlflowClient(store)
    assert client.get_run(run_id).data.tags["envlock.inputs_read"] == "3"
    record = json.loads(Path(client.download_artifacts(
        run_id, "envlock/inputs-read.json", str(tmp_path))).read_text())
    assert record["read"] == sorted([str(root / "data" / "train.csv"), str(extra),
                                     str(model["folder"] / "snapshots" / COMMIT / "config.json")])
    assert record["outputs"] == [str(root / "ckpt.bin")]
    lock = yaml.safe_load((root / ".envlock" / "runs" / run_id / "envlock.lock.yaml").read_text())
    pinned = {i["path"]: i for i in lock["inputs"]}
    assert {p: (i["sources"], i["size"], i["carry"]) for p, i in pinned.items()
            if p != str(model["folder"])} == {"data/train.csv": (["read"], 4, "reference"),
                                              str(extra): (["read"], 64, "reference")}
    hub = pinned[str(model["folder"])]
    assert (hub["kind"], hub["hub"]) == ("hub-model", {"repo": "org/tiny", "type": "model",
                                                       "revision": COMMIT, "refs": "main"})
    assert {f["path"]: f["sha256"] for f in hub["files"]} == {
        f"snapshots/{COMMIT}/{name}": hashlib.sha256(body).hexdigest()
        for name, body in model["files"].items()} | {
        "refs/main": hashlib.sha256(COMMIT.encode()).hexdigest()}


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_model(cache: Path) -> dict:
    """A tiny model in the Hugging Face hub cache's layout: blobs named by their sha256,
    a snapshot of relative links to them, refs/main naming the snapshot's commit."""
    import numpy
    from safetensors.numpy import save

    folder = cache / "models--org--tiny"
    files = {"config.json": b'{"hidden_size": 2}',
             "model.safetensors": save({"w": numpy.arange(4, dtype=numpy.float32)})}
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for name, body in files.items():
        blob = folder / "blobs" / hashlib.sha256(body).hexdigest()
        blob.write_bytes(body)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return {"folder": folder, "files": files}


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 API on 127.0.0.1 (moto's server), a versioned bucket, and the environment
    that points boto3 (in envlock's processes too) at it."""
    import socket
    import subprocess
    import sys
    import time

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H",
                               "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        for _ in range(100):
            try:
                client.create_bucket(Bucket="data")
                break
            except Exception:  # noqa: BLE001  not listening yet
                time.sleep(0.2)
        client.put_bucket_versioning(Bucket="data",
                                     VersioningConfiguration={"Status": "Enabled"})
        yield client, env
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_s3_input_is_pinned_by_etag_and_version_and_a_changed_one_stops_the_replay(
        setup, s3):
    client, env = s3
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput

    first = client.put_object(Bucket="data", Key="train.csv", Body=b"1\n2\n")
    valid = client.put_object(Bucket="data", Key="valid.csv", Body=b"3\n")
    run_id = setup["exp"].train("--data", str(setup["extra"]))
    # what mlflow.log_input(mlflow.data.from_pandas(df, source="s3://…")) records
    MlflowClient(setup["exp"].store).log_inputs(run_id, [DatasetInput(Dataset(
        name="valid", digest="0123abcd", source_type="s3",
        source=json.dumps({"uri": "s3://data/valid.csv"})))])
    payload = setup["capture"](run_id, "--input", "s3://data/train.csv", **env)
    pinned = {i["path"]: i for i in payload["inputs"]["inputs"]}
    assert pinned["s3://data/train.csv"]["carry"] == "reference"
    assert pinned["s3://data/train.csv"]["size"] == 4
    assert (pinned["s3://data/valid.csv"]["carry"], pinned["s3://data/valid.csv"]["sources"],
            pinned["s3://data/valid.csv"]["size"]) == ("reference", ["mlflow"], 2)
    import yaml

    lock = yaml.safe_load((setup["exp"].root / ".envlock" / "runs" / run_id
                           / "envlock.lock.yaml").read_text())
    remotes = {i["path"]: i for i in lock["inputs"] if i["kind"] == "remote"}
    assert remotes["s3://data/train.csv"]["remote"] == {
        "etag": first["ETag"].strip('"'), "version_id": first["VersionId"]}
    assert remotes["s3://data/valid.csv"]["remote"] == {
        "etag": valid["ETag"].strip('"'), "version_id": valid["VersionId"]}
    assert remotes["s3://data/valid.csv"]["dataset"] == {"name": "valid", "digest": "0123abcd"}

    client.put_object(Bucket="data", Key="train.csv", Body=b"1\n2\n3\n")
    refused = setup["exp"].envlock("replay", run_id, ENVLOCK_CACHE=setup["cache"], **env)
    assert refused.returncode == 2, refused.stderr
    assert "s3://data/train.csv: changed (size 4 → 6, etag " in refused.stderr
    assert "trained" not in refused.stderr
