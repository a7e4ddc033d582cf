"""A test that needs an optional dependency is skipped with the reason without it, and
fails in CI (CI=true), where every optional dependency must be installed
(tests/conftest.py: the ``extra`` marker calls require_extra before the test runs)."""

import pytest

from tests.conftest import optional_module, require_extra


def test_without_the_dependency_a_test_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs the optional envlock_no_such_mod"):
        require_extra("envlock_no_such_module")


def test_in_ci_a_missing_dependency_fails(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires every optional"):
        require_extra("envlock_no_such_module")


def test_an_installed_dependency_runs_and_is_importable(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require_extra("yaml")
    assert optional_module("yaml") is not None
    assert optional_module("envlock_no_such_module") is None
