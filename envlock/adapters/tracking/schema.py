"""A SQL tracking store's schema, read without writing, against envlock's own MLflow.

MLflow migrates a store when it is opened by a release whose tables it lacks (its client
runs the alembic upgrade), after which the MLflow that wrote it refuses it ("out-of-date
database schema"). envlock never changes a user's store: before a client is made, the
store's alembic revision is read (a SQLite file opened read-only) and a store whose
revision is not the head of envlock's MLflow is refused with a one-line error that names
the store's MLflow, envlock's, and the fix. A store that does not exist yet (or holds no
table at all) is a new store: MLflow creates it at its own head.

Refusing, rather than talking to the store through the MLflow that wrote it: most
commands (lineage, diff, verify, replay) have no training interpreter to borrow one from,
and every client call would have to cross a process boundary; the fix is one install.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.model.atomic import atomic_file

#: The alembic head of MLflow's releases: revision -> the releases with that head, as
#: read from the wheels of mlflow 1.0.0-3.18.0 on PyPI (their db_migrations/versions).
#: The last release named is the newest with that schema. A revision that is no release's
#: head (a development build) is placed by the installed MLflow's own migrations.
RELEASE_HEADS: dict[str, str] = {
    "181f10493468": "1.1.0", "7ac759974ad8": "1.2.0", "89d4b8295536": "1.3.0",
    "2b4d017a5e9b": "1.4.0", "cfd24bdc0731": "1.5.0", "0a8213491aaa": "1.6.0 to 1.9.1",
    "27a6a02d2cf1": "1.10.0", "84291f40a231": "1.11.0 to 1.12.1",
    "a8c4a736bde6": "1.13 to 1.14.1", "39d1c3be5f05": "1.15.0",
    "c48cb773bb87": "1.16.0 to 1.24.0", "bd07f7e963c5": "1.25.0 to 1.27.0",
    "cc1f77228345": "1.28.0", "97727af70f4d": "1.29.0 to 2.2.2",
    "3500859a5d39": "2.3.0 to 2.3.2", "7f2a7d5fae7d": "2.4.0 to 2.7.1",
    "acf3f17fdcc7": "2.8.0 to 2.12.2", "867495a8f9d4": "2.13.0",
    "5b0e9adcef9c": "2.13.1 to 2.14.3", "4465047574b1": "2.15.0 to 2.16.2",
    "f5a4f2784254": "2.17.0 to 2.17.2", "0584bdc529eb": "2.18.0 to 2.22.5",
    "6953534de441": "3.0.0 and 3.1.0", "bda7b8c39065": "3.0.1 and 3.1.1 to 3.1.4",
    "770bee3ae1dd": "3.2.0", "1a0cddfcaa16": "3.3.0 to 3.3.2", "71994744cf8e": "3.4.0",
    "bf29a5ff90ea": "3.5.0 to 3.7.0", "1bd49d398cd23": "3.8.0 to 3.8.1",
    "d3e4f5a6b7c8": "3.9.0", "1b5f0d9ad7c1": "3.10.0 to 3.10.1",
    "c3d6457b6d8a": "3.11.0 to 3.11.1", "7d34483879f0": "3.12.0", "da6fb0208061": "3.13.0",
    "b7e4c1a90f23": "3.14.0", "6f8d9c3b2a1e": "3.15.0 to 3.15.2",
    "b7e2c1a4d9f3": "3.16.0 to 3.16.1", "dc11669786a5": "3.17.0 to 3.17.2",
    "f4a9b2c7d1e6": "3.18.0",
}

#: The oldest MLflow envlock installs beside: mlflow-skinny before 3.10 requires
#: packaging<26, envlock packaging>=26.1 (packaging.pylock).
OLDEST_SUPPORTED = (3, 10)

#: What :func:`read_revision` returns for a database with tables but no MLflow schema.
NOT_MLFLOW = "(none)"


@dataclass(frozen=True)
class Installed:
    """envlock's MLflow: its version, and its migrations oldest first (the head last)."""

    version: str
    chain: tuple[str, ...]

    @property
    def head(self) -> str:
        return self.chain[-1]


@functools.lru_cache(maxsize=1)
def installed() -> Installed:
    """The version and alembic chain of the MLflow envlock imports (no database touched).
    Walking the migrations with alembic imports each of them (about a second, on every
    capture); the chain is kept in envlock's cache, keyed by the version and the
    migrations' names, sizes and times, and walked again only when one of them changes."""
    import mlflow

    location = Path(mlflow.__file__).parent / "store" / "db_migrations"
    cached = _chain_cache(location, str(mlflow.__version__))
    try:
        return Installed(mlflow.__version__, tuple(json.loads(cached.read_text())))
    except (OSError, ValueError, TypeError):
        pass
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(location))
    chain = tuple(reversed([r.revision for r in script.walk_revisions()]))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cached, 0o644) as handle:
            handle.write(json.dumps(list(chain)).encode())
    except OSError:
        pass  # a read-only cache: walked again next time
    return Installed(mlflow.__version__, chain)


def _chain_cache(location: Path, version: str) -> Path:
    """Where the alembic chain of these migrations is kept (``$ENVLOCK_CACHE``)."""
    import hashlib

    key = hashlib.sha256(f"{version}\0{location}".encode())
    try:
        for entry in sorted(os.scandir(location / "versions"), key=lambda e: e.name):
            info = entry.stat()
            key.update(f"\0{entry.name}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    except OSError:
        key.update(b"\0unreadable")
    from envlock.model.cachehome import cache_home

    return cache_home() / "mlflow-schema" / f"{key.hexdigest()[:32]}.json"


def database_uri(uri: str) -> bool:
    """Whether ``uri`` names a SQL database (MLflow's SQLAlchemy store)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    return scheme in ("sqlite", "postgresql", "mysql", "mssql")


def read_revision(uri: str) -> str | None:
    """The store's alembic revision, read without writing; None for a new store (no file,
    or no table at all), :data:`NOT_MLFLOW` for a database that is not MLflow's."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() != "sqlite":
        return _server_revision(uri)
    if url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return _sqlite_revision(path) if path.exists() else None


def _sqlite_revision(path: Path) -> str | None:
    """A SQLite file's revision: opened read-only (``mode=ro``), so nothing can be written,
    not even a journal."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                            uri=True)) as db:
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        found = (db.execute("SELECT version_num FROM alembic_version").fetchall()
                 if "alembic_version" in tables else [])
    return _revision(tables, [row[0] for row in found])


def _server_revision(uri: str) -> str | None:
    """A database server's revision, read in a transaction that is rolled back."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
            found = (conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
                     .scalars().all() if "alembic_version" in tables else [])
            conn.rollback()
    finally:
        engine.dispose()
    return _revision(tables, list(found))


def _revision(tables: set[str], versions: list[Any]) -> str | None:
    if versions:
        return str(versions[0])
    if not {t for t in tables if not t.startswith("alembic_")}:
        return None  # empty: MLflow creates every table at its own head
    return NOT_MLFLOW


def releases(revision: str, ours: Installed) -> str | None:
    """The MLflow releases whose schema ``revision`` is ("3.5.0 to 3.7.0"), or, for a
    revision that is no release's head, the first release that has it ("before 3.5.0")."""
    if revision in RELEASE_HEADS:
        return RELEASE_HEADS[revision]
    if revision not in ours.chain:
        return None
    later = ours.chain[ours.chain.index(revision):]
    first = next((RELEASE_HEADS[r] for r in later if r in RELEASE_HEADS), None)
    return f"a development build before {first.split(' ')[0]}" if first else None


def newest(label: str) -> str:
    """The newest release a :data:`RELEASE_HEADS` label names."""
    return re.split(r"[ ,]+", label)[-1]


def problem(uri: str, revision: str, ours: Installed) -> tuple[str, str]:
    """The one-line message and fix for a store whose revision is not ``ours.head``."""
    if revision == NOT_MLFLOW:
        return (f"tracking store {uri} is a database without MLflow's schema (no alembic "
                "revision); MLflow would create its tables in it",
                "point MLFLOW_TRACKING_URI (or tracking_uri) at an MLflow store")
    label = releases(revision, ours)
    if revision not in ours.chain:
        written = f"MLflow {label}" if label else "a newer MLflow"
        return (f"tracking store {uri} has a database schema this MLflow ({ours.version}) "
                f"does not know: alembic revision {revision}, written by {written}",
                f"install the training's MLflow beside envlock: "
                f"{_pip(newest(label) if label else 'VERSION')}")
    written = f"MLflow {label}" if label else "an older MLflow"
    message = (f"tracking store {uri} has the schema of {written} (alembic revision "
               f"{revision}), not that of envlock's MLflow {ours.version} ({ours.head}); "
               f"opening it would upgrade it for good, and {written} could no longer open it")
    upgrade = (f"after a backup, upgrade the store (and the training's MLflow with it): "
               f"mlflow db upgrade {uri}")
    if label and label[0].isdigit() and _supported(newest(label)):
        return message, f"install the store's MLflow beside envlock: {_pip(newest(label))}; " \
                        f"or, {upgrade}"
    return message, (f"envlock runs with MLflow {'.'.join(map(str, OLDEST_SUPPORTED))} or "
                     f"newer only; {upgrade}")


def _pip(version: str) -> str:
    import sys

    return f"{sys.executable} -m pip install 'mlflow-skinny=={version}'"


def _supported(version: str) -> bool:
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    return parts >= OLDEST_SUPPORTED
