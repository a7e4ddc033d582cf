"""A grid search as people write it: full `mlflow` with scikit-learn autologging (a parent
run, one child run per candidate, the estimator's HTML, cv_results.csv, confusion
matrices, the best model as an MLflow logged model), plus a figure and a note logged by
hand. Seeded, so the scores are the same on every run; fit times are wall clock.

    python search_autolog.py
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=3)
mlflow.sklearn.autolog(max_tuning_runs=None)  # its own failures printed, never hidden
with mlflow.start_run(run_name="grid"):
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 0.1, 1.0, 10.0]},
                          cv=3)
    search.fit(X, y)
    figure, axes = plt.subplots(figsize=(4, 3))
    axes.plot(search.cv_results_["param_C"].data, search.cv_results_["mean_test_score"])
    axes.set_xscale("log")
    mlflow.log_figure(figure, "figures/scores.png")
    mlflow.log_text(f"best C {search.best_params_['C']}\n", "notes/summary.txt")
print("search done: best", search.best_params_, round(search.best_score_, 6))
