"""A deterministic scikit-learn run that logs to MLflow (no PyTorch in its environment).
    python train.py [--seed N] [--C C]
"""

import argparse

import mlflow
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--C", type=float, default=1.0)
args = parser.parse_args()

X, y = make_classification(n_samples=2000, n_features=20, n_informative=8,
                           random_state=args.seed)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                    random_state=args.seed)
with mlflow.start_run():
    mlflow.log_params({"seed": args.seed, "C": args.C})
    model = LogisticRegression(C=args.C, max_iter=1000).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    mlflow.log_metrics({"accuracy": accuracy_score(y_test, proba.argmax(axis=1)),
                        "log_loss": log_loss(y_test, proba)})
    print("trained")
