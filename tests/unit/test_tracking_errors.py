"""MLflow's errors become envlock errors that say what really happened (a real embedded
SQLite store; no server), and a store whose schema is not envlock's MLflow's is refused
before MLflow could migrate it (envlock.adapters.tracking.schema)."""

import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import pytest

from envlock.adapters.tracking import (
    StoreSchemaError,
    Tracker,
    TrackingError,
    UnknownRun,
    schema,
)
from envlock.errors import EXIT_USAGE


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Where the stores MLflow creates live: a tmpfs where there is one, else pytest's
    temporary folder. Creating a store commits once per migration, and on a busy disk the
    syncs took 3 times as long as the migrations' own work (9 s against 3 s)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("scratch")
        return
    path = Path(tempfile.mkdtemp(prefix="envlock-unit-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def head_store(scratch):
    """A new store, made by envlock's Tracker where no file (nor its folder) exists yet:
    MLflow creates it at the head, running every migration once for the whole module.
    Tests open copies of it, never this file: MLflow caches a store per URI in its
    process, so each copy (a new URI) is opened afresh."""
    store = scratch / "head" / "new" / "mlflow.db"
    Tracker(f"sqlite:///{store}")
    return store


def copy_of(head_store, folder):
    store = folder / "mlflow.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(head_store.read_bytes())
    return store


@pytest.fixture(scope="module")
def tracker(scratch, head_store):
    """A store at the head revision (a copy of ``head_store``: no migrations to run again)."""
    return Tracker(f"sqlite:///{copy_of(head_store, scratch / 'store')}")


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


def store_at(head_store, tmp_path, revision):
    """A copy of the head store whose alembic revision says ``revision``."""
    store = copy_of(head_store, tmp_path)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    return store


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(store):
    """The refusal of ``store``, checked to have left it byte for byte as it was."""
    before = sha256(store)
    with pytest.raises(StoreSchemaError) as caught:
        Tracker(f"sqlite:///{store}")
    assert sha256(store) == before
    assert "\n" not in str(caught.value) and caught.value.exit_code == EXIT_USAGE
    return caught.value


def test_a_store_written_by_a_newer_mlflow_is_a_one_line_error_naming_both(head_store,
                                                                           tmp_path):
    """A revision no MLflow envlock knows of: a training venv with a newer MLflow."""
    import mlflow

    error = refused(store_at(head_store, tmp_path, "0123456789ab"))
    assert f"this MLflow ({mlflow.__version__}) does not know" in error.message
    assert "0123456789ab" in error.message and "a newer MLflow" in error.message
    assert "mlflow-skinny==VERSION" in str(error.hint)


def test_a_store_of_an_older_supported_mlflow_names_it_and_the_install(head_store, tmp_path):
    import mlflow

    error = refused(store_at(head_store, tmp_path, "1b5f0d9ad7c1"))
    assert "the schema of MLflow 3.10.0 to 3.10.1 (alembic revision 1b5f0d9ad7c1)" \
        in error.message
    assert f"envlock's MLflow {mlflow.__version__}" in error.message
    assert f"{sys.executable} -m pip install 'mlflow-skinny==3.10.1'" in str(error.hint)
    assert "mlflow db upgrade" in str(error.hint)


def test_a_store_of_an_mlflow_envlock_cannot_run_with_is_told_to_upgrade_the_store(
        head_store, tmp_path):
    error = refused(store_at(head_store, tmp_path, "bf29a5ff90ea"))  # 3.5.0 to 3.7.0
    assert "MLflow 3.5.0 to 3.7.0" in error.message
    assert "pip install" not in str(error.hint)
    assert f"mlflow db upgrade sqlite:///{tmp_path}/mlflow.db" in str(error.hint)


def test_a_database_without_mlflows_schema_is_refused_untouched(tmp_path):
    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    assert "without MLflow's schema" in refused(store).message


def test_a_new_store_is_created_at_the_head(head_store):
    """Where no file (nor its folder) exists: ``head_store`` is that store, made by the
    Tracker; opening it migrated nothing after its creation."""
    assert schema.read_revision(f"sqlite:///{head_store}") == schema.installed().head


def test_an_empty_file_is_a_new_store_created_at_the_head(scratch):
    store = scratch / "empty" / "mlflow.db"
    store.parent.mkdir()
    store.touch()
    Tracker(f"sqlite:///{store}")
    assert schema.read_revision(f"sqlite:///{store}") == schema.installed().head


def test_the_revision_is_read_without_writing_on_both_paths(head_store, tmp_path):
    """SQLite opened read-only, and the SQLAlchemy path (database servers) on the same file."""
    store = store_at(head_store, tmp_path, "1b5f0d9ad7c1")
    before = sha256(store)
    assert schema.read_revision(f"sqlite:///{store}") == "1b5f0d9ad7c1"
    assert schema._server_revision(f"sqlite:///{store}") == "1b5f0d9ad7c1"
    assert sha256(store) == before


def test_a_store_at_the_head_opens_as_before(head_store, tmp_path):
    store = copy_of(head_store, tmp_path)
    before = sha256(store)
    Tracker(f"sqlite:///{store}").client.search_experiments()
    assert schema.read_revision(f"sqlite:///{store}") == schema.installed().head
    assert sha256(store) == before


def test_a_development_revision_is_placed_by_the_migrations():
    ours = schema.Installed("9.9.9", ("bf29a5ff90ea", "0000000000aa", "1bd49d398cd23"))
    assert schema.releases("0000000000aa", ours) == "a development build before 3.8.0"
    assert schema.releases("bf29a5ff90ea", ours) == "3.5.0 to 3.7.0"
    assert schema.releases("ffffffffffff", ours) is None


def test_the_release_table_follows_the_installed_migrations():
    """Heads that the installed MLflow ships appear in its chain in release order."""
    from packaging.version import Version

    chain = schema.installed().chain
    heads = [h for h in chain if h in schema.RELEASE_HEADS]
    assert len(heads) >= 20
    firsts = [Version(schema.RELEASE_HEADS[h].split(" ")[0]) for h in heads]
    newests = [Version(schema.newest(schema.RELEASE_HEADS[h])) for h in heads]
    assert newests == sorted(newests) and firsts[0] < firsts[-1]


def test_uris_that_are_not_sql_databases_are_not_read():
    assert not schema.database_uri("http://127.0.0.1:5000")
    assert not schema.database_uri("file:///tmp/mlruns")
    assert schema.database_uri("sqlite:///mlflow.db")
    assert schema.database_uri("postgresql+psycopg2://u:p@h/db")


def test_a_database_server_that_cannot_be_read_is_named_without_its_password():
    with pytest.raises(TrackingError) as caught:
        Tracker("postgresql://someone:s3cret-pw@127.0.0.1:9/mlflow")
    assert "cannot be read" in caught.value.message
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1:9/mlflow" in str(caught.value)
