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
