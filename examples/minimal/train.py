"""A tiny deterministic experiment: fits y = 3x + 1 by gradient descent, logs to MLflow.

Standard library + MLflow only, so its image is small; the seed makes it replayable.
    python train.py [--seed N] [--epochs N]
"""

import argparse
import random

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

rng = random.Random(args.seed)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(64))]

with mlflow.start_run():
    mlflow.log_params({"seed": args.seed, "epochs": args.epochs, "lr": 0.1})
    w = b = 0.0
    for epoch in range(args.epochs):
        gw = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        gb = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w, b = w - 0.1 * gw, b - 0.1 * gb
        loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
        mlflow.log_metric("loss", loss, step=epoch)
    mlflow.log_metrics({"w": w, "b": b})
    print(f"trained: w={w:.6f} b={b:.6f} loss={loss:.6f}")
