"""The alembic chain of envlock's MLflow is walked once, then read from envlock's cache
(walking imports every migration: about a second on each capture)."""

from __future__ import annotations

import pytest

from envlock.adapters.tracking import schema


def test_the_chain_is_walked_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import alembic.script

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path))
    schema.installed.cache_clear()
    walked = schema.installed()
    assert len(walked.chain) > 10 and list((tmp_path / "mlflow-schema").glob("*.json"))

    def no_walk(*_args, **_kwargs):
        raise AssertionError("the chain was walked again")

    monkeypatch.setattr(alembic.script, "ScriptDirectory", no_walk)
    schema.installed.cache_clear()
    assert schema.installed() == walked  # from the cache, no alembic
    for entry in (tmp_path / "mlflow-schema").glob("*.json"):
        entry.write_text("not json")
    schema.installed.cache_clear()
    with pytest.raises(AssertionError, match="walked again"):  # a broken entry: walked
        schema.installed()
    schema.installed.cache_clear()
