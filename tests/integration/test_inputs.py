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

import json
import uuid

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

    def capture(run_id: str, **env: str) -> dict:
        result = exp.envlock("capture", "--run-id", run_id, "--python", str(exp.python),
                             "--command", command, "--base-image", infra.base_image,
                             "--registry", f"{infra.registry}/{REPO}", "--json",
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
            "b": (run_b, captured_b)}


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
