"""operations.connect: registry credentials from the flags and stdin, and the checks made
before anything connects (no engine, registry or tracking store is reached here)."""

import io

import pytest

from envlock.errors import UsageError
from envlock.operations import connect
from tests.fakes import FakeTracker


def test_credentials_come_from_the_user_flag_and_one_line_of_stdin():
    stdin = io.StringIO("s3cret\r\nnot read\n")
    assert connect.read_credentials("ci-bot", True, stdin) == ("ci-bot", "s3cret")
    assert connect.as_auth(("ci-bot", "s3cret")) == {"username": "ci-bot",
                                                     "password": "s3cret"}
    assert connect.read_credentials(None, False, io.StringIO("unused")) is None
    assert connect.as_auth(None) is None


@pytest.mark.parametrize("username, stdin_flag, stdin, message", [
    ("ci-bot", False, "x\n", "go together"), (None, True, "x\n", "go together"),
    ("ci-bot", True, "\n", "empty password"), ("ci-bot", True, "", "empty password"),
])
def test_half_given_or_empty_credentials_are_one_usage_error(username, stdin_flag, stdin,
                                                             message):
    with pytest.raises(UsageError, match=message):
        connect.read_credentials(username, stdin_flag, io.StringIO(stdin))


def test_credentials_without_a_registry_stop_before_any_engine(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    with pytest.raises(UsageError, match="no registry"):
        connect.build_setup(None, "ci-bot", True, "oci")


def test_the_oci_builder_connects_no_engine_and_passes_the_credentials_on(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    engine, auth = connect.build_setup("127.0.0.1:5000/team/exp", "ci-bot", True, "oci")
    assert engine is None and auth == {"username": "ci-bot", "password": "s3cret"}


def test_logging_in_for_a_replay_needs_an_image_in_a_registry():
    tracker = FakeTracker()
    local = tracker.add_run(tags={"envlock.image": "sha256:" + "0" * 64})
    with pytest.raises(UsageError, match="no image in a registry"):
        connect.engine_for_run(tracker, local, "ci-bot", True)
