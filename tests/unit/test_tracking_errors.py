"""MLflow's errors become envlock errors that say what really happened (a real embedded
SQLite store; no server)."""

import pytest

from envlock.adapters.tracking import Tracker, TrackingError, UnknownRun


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db")


@pytest.mark.parametrize("run_id", ["0" * 32, "bad id!"])
def test_a_missing_or_malformed_run_id_is_no_such_run(tracker, run_id):
    with pytest.raises(UnknownRun, match="no run"):
        tracker.run(run_id)


def test_another_invalid_value_is_not_reported_as_a_missing_run(tracker):
    run_id = tracker.create_run("0", "r", {})
    with pytest.raises(TrackingError) as caught:
        tracker.set_tags(run_id, {"k" * 300: "v"})
    assert not isinstance(caught.value, UnknownRun)
    assert "exceeds the maximum length" in caught.value.message
    assert caught.value.hint == "the store refused the request as it was made"


def test_a_store_written_by_a_newer_mlflow_is_a_one_line_error_naming_both(tmp_path):
    """A training venv with a newer MLflow than envlock's (mlflow-skinny 3.18.0 beside a
    3.17.2 envlock) writes a schema the older client refuses."""
    import sqlite3
    import subprocess
    import sys

    import mlflow

    store = tmp_path / "mlflow.db"
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.tracking import MlflowClient;"
                    " MlflowClient(sys.argv[1]).search_experiments()", f"sqlite:///{store}"],
                   check=True, capture_output=True, timeout=120)  # a real store (MLflow
    # caches a store per URI in its process: made elsewhere, it is opened afresh here)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE alembic_version SET version_num = 'f4a9b2c7d1e6'")
    with pytest.raises(TrackingError) as caught:
        Tracker(f"sqlite:///{store}")
    assert f"this MLflow ({mlflow.__version__}) does not know" in caught.value.message
    assert "f4a9b2c7d1e6" in caught.value.message and "\n" not in caught.value.message
    assert "mlflow-skinny==VERSION" in str(caught.value.hint)
