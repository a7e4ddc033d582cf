"""The alembic chain of envlock's MLflow is walked once, then read from envlock's cache
(walking imports every migration: about a second on each capture). The walker is a fake
here, counting its walks; tests/integration/test_store_schema.py checks the real chain."""

from __future__ import annotations

from types import SimpleNamespace

from envlock.adapters.tracking import schema


class _Walker:
    walks = 0

    def __init__(self, location: str) -> None:
        assert location.endswith("db_migrations")

    def walk_revisions(self):
        _Walker.walks += 1
        return [SimpleNamespace(revision=r) for r in ("c3", "b2", "a1")]  # head first


def test_the_chain_is_walked_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import alembic.script

    monkeypatch.setenv("ENVLOCK_CACHE", str(tmp_path))
    monkeypatch.setattr(alembic.script, "ScriptDirectory", _Walker)
    try:
        schema.installed.cache_clear()
        first = schema.installed()
        assert first.chain == ("a1", "b2", "c3") and first.head == "c3"
        assert _Walker.walks == 1 and list((tmp_path / "mlflow-schema").glob("*.json"))
        schema.installed.cache_clear()
        assert schema.installed() == first and _Walker.walks == 1  # from the cache
        for entry in (tmp_path / "mlflow-schema").glob("*.json"):
            entry.write_text("not json")
        schema.installed.cache_clear()
        assert schema.installed() == first and _Walker.walks == 2  # broken: walked again
    finally:
        schema.installed.cache_clear()
