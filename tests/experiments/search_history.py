"""A grid search autologged by full `mlflow` (a parent, one child run per candidate with
its wall-clock mean_fit_time / mean_score_time), plus a training curve logged by hand:
a seeded SGD classifier, one `loss` and `accuracy` point per epoch. Deterministic but for
the fit and score times. With DRIFT_AT=N in the environment the learning rate changes
from epoch N on: a replay whose history parts from the original's at that step.

    python search_history.py
"""

import os

import mlflow
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV

X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=3)
drift_at = int(os.environ.get("DRIFT_AT", "-1"))
mlflow.sklearn.autolog(max_tuning_runs=None, log_models=False)
with mlflow.start_run(run_name="grid"):
    GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    mlflow.sklearn.autolog(disable=True)
    sgd = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.01, random_state=0)
    for epoch in range(20):
        if epoch == drift_at:
            sgd.eta0 = 0.05
        sgd.partial_fit(X, y, classes=[0, 1])
        mlflow.log_metric("loss", log_loss(y, sgd.predict_proba(X)), step=epoch)
        mlflow.log_metric("accuracy", accuracy_score(y, sgd.predict(X)), step=epoch)
print("search and curve done")
