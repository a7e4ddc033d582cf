"""A tiny training that is nondeterministic on purpose: a seeded gradient descent (its
`loss` is the same on every run) and a `val_loss` measured on an unseeded random half of
the data each epoch (dropout-like noise, different on every run). Standard library and
MLflow only, so its image is small. DATA_SHIFT=X in the environment shifts the data: a
run whose inputs changed.

    python noisy.py
"""

import os
import random

import mlflow

rng = random.Random(0)
shift = float(os.environ.get("DATA_SHIFT", "0"))
data = [(x, 3 * x + 1 + shift + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1)
                                                             for _ in range(64))]
dropout = random.Random()  # unseeded: seeded from the OS on every run

with mlflow.start_run():
    mlflow.log_params({"lr": 0.1, "epochs": 10})
    w = b = 0.0
    for epoch in range(10):
        gw = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        gb = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w, b = w - 0.1 * gw, b - 0.1 * gb
        mlflow.log_metric("loss", sum((w * x + b - y) ** 2 for x, y in data) / len(data),
                          step=epoch)
        kept = [(x, y) for x, y in data if dropout.random() < 0.5] or data
        mlflow.log_metric("val_loss", sum((w * x + b - y) ** 2 for x, y in kept) / len(kept),
                          step=epoch)
print(f"trained: w={w:.6f} b={b:.6f}")
