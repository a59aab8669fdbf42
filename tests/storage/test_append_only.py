"""Append-only against every kind of statement, on both backends: each table of the record refuses UPDATE,
DELETE, REPLACE, upserts, TRUNCATE and MERGE from any client, and accounts keep their identity.

The SQLite statements go through a plain sqlite3 connection, as an outside client would send them: no
foreign keys, no recursive triggers, nothing the application's own connections set up.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from anomascope.storage import (
    APPEND_ONLY,
    Database,
    add_user,
    disable_user,
    record_run,
    save_annotation,
    save_preset,
    start_tuning_session,
)
from anomascope.storage.db import head_revision
from anomascope.storage.models import Base
from tests.conftest import BACKENDS, POSTGRES_URL, _reset_postgres
from tests.storage.test_integrity import _case

RECORD_TABLES = [model.__tablename__ for model in APPEND_ONLY]
# Tables with a unique key besides the id: a REPLACE with a new id still replaces the row holding the key.
SECOND_KEYS = {"cases", "annotations", "threshold_presets", "tuning_sessions"}

SQLITE_STATEMENTS = {
    "update": "UPDATE {t} SET created = created",
    "delete": "DELETE FROM {t}",
    "insert or replace": "INSERT OR REPLACE INTO {t} SELECT * FROM {t}",
    "replace into": "REPLACE INTO {t} SELECT * FROM {t}",
    "update or replace": "UPDATE OR REPLACE {t} SET created = created",
    "upsert": "INSERT INTO {t} SELECT * FROM {t} WHERE true ON CONFLICT (id) DO UPDATE SET created = excluded.created",
}
POSTGRES_STATEMENTS = {
    "update": "UPDATE {t} SET created = created",
    "delete": "DELETE FROM {t}",
    "truncate": "TRUNCATE {t}",
    "truncate cascade": "TRUNCATE {t} CASCADE",
    "upsert": "INSERT INTO {t} SELECT * FROM {t} ON CONFLICT (id) DO UPDATE SET created = excluded.created",
    "merge": "MERGE INTO {t} AS old USING {t} AS new ON old.id = new.id WHEN MATCHED THEN DELETE",
}


def test_every_table_is_either_the_record_or_the_accounts():
    """A table added later must say which it is, and so joins the matrix below."""
    assert set(Base.metadata.tables) == {*RECORD_TABLES, "users"}


def _filled(url: str) -> Database:
    """A database with at least one row in every table."""
    db = Database(url)
    case = _case(db)
    run = record_run(
        db,
        case_id=case.id,
        method="spr",
        bundle_id="b",
        weights_hash="w" * 64,
        parameters={},
        threshold=0.5,
        threshold_method="max_f1",
        image_score=0.1,
        seconds=1.0,
        device="cpu",
        actor="dr",
    )
    tuning = start_tuning_session(db, bundle_id="b", readout="spr", reader="dr", worklist={"cases": ["x.png"]})
    save_annotation(
        db, case_id=case.id, run_id=run.id, mask=np.ones((2, 2)), author="dr", threshold=0.5, tuning=(tuning.id, 0)
    )
    save_preset(db, bundle_id="b", name="site", value=0.4, provenance="test", actor="dr")
    add_user(db, "carol", "a long enough password", "admin")
    return db


def _snapshot(db: Database) -> dict[str, list]:
    with db.engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in Base.metadata.tables
        }


def _sqlite_refuses(url: str, statement: str) -> None:
    connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute(statement)
    finally:
        connection.close()


def _postgres_refuses(db: Database, statement: str) -> None:
    # A plain TRUNCATE of a table others refer to is stopped by the foreign keys before any trigger runs.
    with pytest.raises(DBAPIError, match="append-only|referenced in a foreign key"), db.engine.begin() as connection:
        connection.execute(text(statement))


@pytest.fixture(params=BACKENDS)
def filled(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'record.sqlite'}"
    else:
        _reset_postgres(POSTGRES_URL)
        url = POSTGRES_URL
    db = _filled(url)
    yield url, db
    db.dispose()


def _statements(db: Database) -> dict[str, str]:
    if db.engine.dialect.name == "sqlite":
        return SQLITE_STATEMENTS
    with db.engine.connect() as connection:
        version = connection.exec_driver_sql("SHOW server_version_num").scalar()
    return {k: v for k, v in POSTGRES_STATEMENTS.items() if k != "merge" or int(version) >= 150000}


def _refuses(url: str, db: Database, statement: str) -> None:
    if db.engine.dialect.name == "sqlite":
        _sqlite_refuses(url, statement)
    else:
        _postgres_refuses(db, statement)


@pytest.mark.parametrize("table", RECORD_TABLES)
def test_every_statement_kind_is_refused_on_every_record_table(filled, table):
    url, db = filled
    before = _snapshot(db)
    for kind, statement in _statements(db).items():
        _refuses(url, db, statement.format(t=table))
        assert _snapshot(db) == before, f"{kind} on {table} changed the record"


@pytest.mark.parametrize("table", sorted(SECOND_KEYS))
def test_a_replace_under_a_new_id_cannot_take_a_stored_key(filled, table):
    """REPLACE on the (lineage, version), content hash, preset version or session uid of a stored row would
    delete that row and insert the forged one under a fresh id."""
    url, db = filled
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no REPLACE; its upserts are refused above")
    before = _snapshot(db)
    columns = [c.name for c in Base.metadata.tables[table].columns]
    forged = ", ".join("id + 1000" if c == "id" else c for c in columns)
    _sqlite_refuses(url, f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) SELECT {forged} FROM {table}")
    assert _snapshot(db) == before


def test_accounts_keep_their_identity_and_are_never_deleted(filled):
    url, db = filled
    before = _snapshot(db)
    statements = {
        **{k: v for k, v in _statements(db).items() if k not in ("update", "update or replace", "upsert")},
        "rename": "UPDATE users SET name = 'mallory'",
        "new id": "UPDATE users SET id = id + 1",
        "upsert renaming": "INSERT INTO users SELECT * FROM users WHERE true "
        "ON CONFLICT (id) DO UPDATE SET name = 'mallory'",
    }
    for kind, statement in statements.items():
        _refuses(url, db, statement.format(t="users"))
        assert _snapshot(db) == before, f"{kind} changed the accounts"
    disable_user(db, "carol", "admin")  # the sign-in state is what an account may change
    with db.sessions() as session:
        assert session.execute(text("SELECT active FROM users")).scalar() in (False, 0)


OPEN_AT = """
import sys, time
from anomascope.storage import Database
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process opens the database at one instant
Database(sys.argv[1]).dispose()
"""


def test_servers_started_at_once_on_an_empty_postgres_database_all_open_it():
    """The first migration creates types; run twice at once, one would fail on a duplicate type name."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server (CI starts one)")
    import subprocess
    import sys
    import time

    _reset_postgres(POSTGRES_URL)
    at = str(time.time() + 4)
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT, POSTGRES_URL, at], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    failures = [p.communicate(timeout=120)[1] for p in processes if p.wait(timeout=120) != 0]
    assert not failures, failures[0]
    db = Database(POSTGRES_URL)
    assert db.revision() == head_revision()
    db.dispose()
