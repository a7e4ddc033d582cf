"""Runs shaped as a new user makes them, end to end through the real engine, registry and
MLflow: an Optuna search (Optuna from PyPI) whose trials are nested MLflow runs, some of
them pruned, which MLflow ends FAILED. Its replay reproduces with every child's status
compared; a replay given another pruning threshold names the trials whose status changed.
(A real Lightning checkpoint's explanation is in test_real_libraries.py.)"""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import captured_search


@pytest.fixture(scope="module")
def study(tmp_path_factory, infra, created_images, search_venv):
    """tests/experiments/optuna_search.py trained on the host and captured (no run id:
    capture must pick the study's parent run, not the last trial). The venv and its
    environment image are the session's searches' (conftest's ``search_venv``)."""
    exp, run_id = captured_search(tmp_path_factory.mktemp("optuna"), "optuna_search.py",
                                  search_venv, infra, created_images)
    run = MlflowClient(exp.store).get_run(run_id)
    assert run.info.run_name == "study" and "mlflow.parentRunId" not in run.data.tags
    return exp, run_id


def trial_statuses(store: str, run_id: str) -> dict[str, str]:
    """Each trial's child run name -> the status MLflow recorded for it."""
    client = MlflowClient(store)
    kids = client.search_runs([client.get_run(run_id).info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    return {kid.info.run_name: kid.info.status for kid in kids}


def test_a_study_with_pruned_trials_reproduces_each_trials_status_compared(study):
    exp, run_id = study
    original = trial_statuses(exp.store, run_id)
    assert len(original) == 8 and "FAILED" in original.values() \
        and "FINISHED" in original.values(), original  # pruned trials end FAILED
    verified = exp.envlock("verify", run_id, "--json")
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    result = json.loads(verified.stdout)["result"]
    comparison = result["comparison"]
    assert comparison["reproduced"] is True, comparison
    rows = {r["name"]: r for r in comparison["runs"]}
    assert {name: r["status"]["original"] for name, r in rows.items()} == original
    assert all(r["status"]["replay"] == r["status"]["original"] and r["ok"]
               and r["matched_by"] == "name+params" for r in rows.values()), rows
    assert trial_statuses(exp.store, result["replay_run_id"]) == original
    pruned = sum(1 for status in original.values() if status == "FAILED")
    best = next(m for m in comparison["metrics"] if m["name"] == "best_loss")
    assert best["ok"] and best["original"] == best["replay"]
    assert next(m["replay"] for m in comparison["metrics"]
                if m["name"] == "pruned_trials") == pruned


def test_another_pruning_threshold_names_the_trials_whose_status_changed(study):
    exp, run_id = study
    original = trial_statuses(exp.store, run_id)
    replayed = exp.envlock("replay", run_id, "--env", "PRUNE_ABOVE=3")
    assert replayed.returncode == 0, replayed.stderr[-3000:]  # the study itself ran
    text = replayed.stdout
    assert "NOT REPRODUCED" in text and "child runs: 8 in the original, 8 in the replay" in text
    changed = [line.split()[0] for line in text.splitlines()
               if "FINISHED -> FAILED (DIFFERS)" in line]
    assert changed, text[-3000:]  # a trial finished in the original is pruned now
    assert all(original[name] == "FINISHED" for name in changed), (changed, original)
    assert "PRUNE_ABOVE: original not recorded, replay 3" in text  # explained
    replay_id = MlflowClient(exp.store).search_runs(
        ["0"], filter_string=f"tags.`envlock.replay_of` = '{run_id}'",
        order_by=["attributes.start_time DESC"])[0].info.run_id
    now = trial_statuses(exp.store, replay_id)
    assert sorted(n for n in now if now[n] != original[n]) == sorted(changed)
