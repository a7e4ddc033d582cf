"""A hyperparameter sweep shaped like everyday ones, with only the standard library and
MLflow (any 2.x or 3.x, skinny or full): a parent run, one child run per candidate with
a full metric history and its own files in nested folders, the best candidate's
metrics and a "figure" on the parent, an optional large artifact and an optional model.

    python sweep.py [--children N] [--steps N] [--artifact-mb N] [--model]

Deterministic: the same arguments give the same params, metrics and artifact bytes.
"""

import argparse
import json
import os
import random
import struct
import tempfile
import zlib

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--children", type=int, default=3)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--artifact-mb", type=int, default=0)
parser.add_argument("--model", action="store_true")
args = parser.parse_args()


def png(width, height, seed):
    """A real PNG, deterministic bytes (no timestamp chunk): the 'loss curve' figure."""
    rng = random.Random(seed)
    rows = b"".join(b"\0" + bytes(rng.randrange(256) for _ in range(width * 3))
                    for _ in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def train(lr, seed):
    rng = random.Random(seed)
    w, history = 0.0, []
    for step in range(args.steps):
        w += lr * (3.0 - w) + rng.gauss(0, 0.01)
        history.append((step, (3.0 - w) ** 2))
    return w, history


def log_model(w):
    import mlflow.pyfunc

    class Scaler(mlflow.pyfunc.PythonModel):
        def __init__(self, w):
            self.w = w

        def predict(self, context, model_input):
            return [x * self.w for x in model_input]

    mlflow.pyfunc.log_model(python_model=Scaler(w), artifact_path="model", pip_requirements=[])


candidates = [round(0.05 * (i + 1), 2) for i in range(args.children)]
results = {}
with mlflow.start_run(run_name="sweep") as parent, tempfile.TemporaryDirectory() as tmp:
    mlflow.log_params({"candidates": len(candidates), "steps": args.steps})
    try:  # mlflow-skinny 2.x cannot import its dataset classes without numpy
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
    except ImportError:
        pass
    else:
        mlflow.log_input(MetaDataset(HTTPDatasetSource("https://data.example/toy.csv"),
                                     name="toy"), context="training")
    for i, lr in enumerate(candidates):
        with mlflow.start_run(run_name=f"lr={lr}", nested=True):
            mlflow.log_params({"lr": lr, "seed": i})
            w, history = train(lr, i)
            for step, loss in history:
                mlflow.log_metric("loss", loss, step=step)
            mlflow.log_metric("w", w)
            mlflow.log_dict({"lr": lr, "w": w}, f"candidate/{i}/summary.json")
            results[lr] = history[-1][1]
    best = min(results, key=results.get)
    mlflow.log_metrics({"best_lr": best, "best_loss": results[best]})
    mlflow.log_text(json.dumps(results, sort_keys=True), "results/all.json")
    path = os.path.join(tmp, "loss.png")
    with open(path, "wb") as handle:
        handle.write(png(64, 48, seed=7))
    mlflow.log_artifact(path, "figures")
    if args.artifact_mb:
        blob = os.path.join(tmp, "weights.bin")
        with open(blob, "wb") as handle:
            rng = random.Random(11)
            handle.write(rng.randbytes(args.artifact_mb * 1024 * 1024))
        mlflow.log_artifact(blob, "checkpoints")
    if args.model:
        log_model(train(best, 0)[0])
print(f"sweep: best lr {best}, loss {results[best]:.6f}, run {parent.info.run_id}")
