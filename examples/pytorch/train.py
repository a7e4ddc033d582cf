"""A small, deterministic PyTorch training run that logs to MLflow.

Synthetic data is generated here (no downloads); seeds and deterministic algorithms
make the metrics identical when the run is replayed on CPU by `envlock replay`.
    python train.py [--seed N] [--epochs N] [--lr LR]
"""

import argparse
import os

import mlflow
import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
torch.manual_seed(args.seed)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

# Two interleaved spirals, 512 points: a small non-linear classification task.
g = torch.Generator().manual_seed(args.seed)
n = 256
t = torch.linspace(0.25, 3.0, n)
spiral = torch.stack([t * torch.cos(2 * t), t * torch.sin(2 * t)], dim=1)
x = torch.cat([spiral, -spiral]) + 0.05 * torch.randn(2 * n, 2, generator=g)
y = torch.cat([torch.zeros(n), torch.ones(n)]).long()

model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

with mlflow.start_run():
    mlflow.log_params({"seed": args.seed, "epochs": args.epochs, "lr": args.lr,
                       "torch": torch.__version__})
    for epoch in range(args.epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        mlflow.log_metric("loss", loss.item(), step=epoch)
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    mlflow.log_metrics({"final_loss": loss.item(), "accuracy": accuracy})
    print(f"trained: loss={loss.item():.6f} accuracy={accuracy:.4f}")
