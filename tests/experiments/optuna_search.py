"""An Optuna search as people write it with MLflow: a parent run for the study, one nested
MLflow run per trial, each trial reporting its loss per epoch so that Optuna can prune it.
A pruned trial raises ``optuna.TrialPruned`` inside its ``mlflow.start_run`` block, so
MLflow ends that child run FAILED. Seeded sampler and a threshold pruner: the same trials
are pruned on every run. ``PRUNE_ABOVE`` (default 6) is the pruner's threshold: a replay
with another value prunes other trials.

    python optuna_search.py
"""

import os

import mlflow
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
PRUNE_ABOVE = float(os.environ.get("PRUNE_ABOVE", "6"))


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -4.0, 4.0)
    lr = trial.suggest_float("lr", 0.1, 0.5)
    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
        mlflow.log_params({"x": x, "lr": lr})
        loss = (x - 1.0) ** 2 + 2.0
        for epoch in range(6):
            loss = loss * (1.0 - lr) + 0.5 * lr
            mlflow.log_metric("loss", loss, step=epoch)
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()  # MLflow ends this run FAILED
        return loss


with mlflow.start_run(run_name="study"):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7),
                                pruner=optuna.pruners.ThresholdPruner(upper=PRUNE_ABOVE))
    study.optimize(objective, n_trials=8)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    mlflow.log_params({"n_trials": len(study.trials), "prune_above": PRUNE_ABOVE})
    mlflow.log_metric("best_loss", study.best_value)
    mlflow.log_metric("pruned_trials", len(pruned))
print("study done:", len(pruned), "pruned, best", round(study.best_value, 6))
