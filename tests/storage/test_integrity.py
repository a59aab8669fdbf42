"""What the database itself guarantees: append-only rows, one sentence for every unusable database,
the same text limits on both backends, read-only export, and spreadsheet-safe CSV."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from anomascope.app.cli import main
from anomascope.storage import (
    Annotation,
    AuditEvent,
    Case,
    Database,
    StorageError,
    TuningEntry,
    TuningSession,
    add_case,
    record_run,
    save_annotation,
    save_preset,
    start_tuning_session,
    tuning_entries,
)
from anomascope.storage.db import head_revision
from tests.conftest import POSTGRES_URL


def _case(db: Database, name: str = "x.png") -> Case:
    return add_case(
        db,
        content_hash=(name * 64)[:64],
        source_name=name,
        format="png",
        modality="XC",
        shape=[1, 1, 2, 2],
        spacing=None,
        metadata={},
        actor="tester",
    )


def _counts(db: Database) -> tuple[int, int]:
    with db.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Annotation)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )


@pytest.mark.parametrize(
    "statement",
    [
        update(Annotation).values(note="edited"),
        delete(Annotation),
        update(AuditEvent).values(actor="someone else"),
        delete(AuditEvent),
        text("DELETE FROM annotations"),
    ],
)
def test_append_only_is_enforced_by_the_database(db_url, statement):
    db = Database(db_url)
    save_annotation(db, case_id=_case(db).id, mask=np.ones((2, 2)), author="dr", note="first")
    before = _counts(db)
    # Under the ORM, whose events never see this.
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(statement)
    assert _counts(db) == before
    with db.sessions() as session:
        assert session.scalar(select(Annotation.note)) == "first"
    db.dispose()


def test_truncate_is_refused_on_postgres():
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server (CI starts one)")
    from tests.conftest import _reset_postgres

    _reset_postgres(POSTGRES_URL)
    db = Database(POSTGRES_URL)
    _case(db)
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_events"))
    db.dispose()


@pytest.mark.parametrize("field, value, column_limit", [("label", "x" * 100_000, 128), ("author", "d" * 129, 128)])
def test_text_limits_are_one_sentence_on_every_backend(db_url, field, value, column_limit):
    db = Database(db_url)
    case = _case(db)
    before = _counts(db)
    arguments = {"author": "dr", field: value}
    with pytest.raises(
        StorageError,
        match=f"the {field} is {len(value):,} characters long; at most {column_limit} are stored, so nothing was saved",
    ):
        save_annotation(db, case_id=case.id, mask=np.ones((2, 2)), **arguments)
    assert _counts(db) == before
    db.dispose()


def _newer(folder: Path) -> str:
    url = f"sqlite:///{folder / 'newer.sqlite'}"
    db = Database(url)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    db.dispose()
    return url


def _other_application(folder: Path) -> str:
    with sqlite3.connect(folder / "other.sqlite") as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    return f"sqlite:///{folder / 'other.sqlite'}"


def _not_a_database(folder: Path) -> str:
    (folder / "notes.txt").write_text("shopping list: milk, eggs\n" * 100)
    return f"sqlite:///{folder / 'notes.txt'}"


BAD_DATABASES = {
    "newer schema": (_newer, "has schema revision '0999', which this Anomascope"),
    "another application's SQLite file": (_other_application, "holds another application's tables (notes)"),
    "not a database": (_not_a_database, "is not an SQLite database"),
    "missing folder": (lambda folder: f"sqlite:///{folder / 'nowhere' / 'a.sqlite'}", "does not exist"),
    "unparseable URL": (lambda folder: "::not a url::", "cannot be parsed"),
    "unknown driver": (lambda folder: "nosuchdb://user@host/name", "no installed database driver for 'nosuchdb'"),
    "unreachable PostgreSQL": (
        lambda folder: "postgresql+psycopg2://reader:s3cret@127.0.0.1:9/anomascope",
        "cannot open the database at postgresql+psycopg2://reader:***@127.0.0.1:9",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_DATABASES))
def test_unusable_database_is_one_sentence_and_exit_2(tmp_path, capsys, name):
    make, reason = BAD_DATABASES[name]
    url = make(tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(StorageError, match=re.escape(reason)):
        Database(url)
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("anomascope export: ") and "s3cret" not in line
    assert {p: p.read_bytes() for p in files} == files  # nothing was written into someone else's file


def _saved_database(folder: Path) -> tuple[str, Path]:
    path = folder / "anomascope.sqlite"
    db = Database(f"sqlite:///{path}")
    run = record_run(
        db,
        case_id=_case(db).id,
        method="spr",
        bundle_id="b",
        weights_hash="w",
        parameters={},
        threshold=-0.5,
        threshold_method="manual",
        image_score=1.0,
        seconds=0.1,
        device="cpu",
        actor="dr",
    )
    save_annotation(
        db,
        case_id=run.case_id,
        run_id=run.id,
        mask=np.eye(2, dtype=bool),
        author="@dr",
        label='=HYPERLINK("http://example.invalid","click")',
        note="+1 see -2",
        threshold=-0.5,
        threshold_method="manual",
    )
    db.dispose()
    return f"sqlite:///{path}", path


def test_read_only_database_is_exported_without_a_write(tmp_path, monkeypatch):
    url, path = _saved_database(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # As a reader who may not write the file sees it (root, who runs CI, may write anything).
    monkeypatch.setattr("anomascope.storage.db.writable", lambda path: False)
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "annotations.csv").read_text().count("\n") == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    db = Database(f"sqlite:///file:{path}?mode=ro&uri=true")  # read-only by URL
    assert db.read_only and db.revision() == head_revision()
    with pytest.raises(StorageError, match="rolled back"):
        save_annotation(db, case_id=1, mask=np.ones((2, 2)), author="dr")
    db.dispose()


NOBODY = 65534


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another account can reach: pytest's own are root's alone when root runs the tests."""
    folder = Path(tempfile.mkdtemp(prefix="anomascope-"))
    folder.chmod(0o755)
    yield folder
    for inner in folder.rglob("*"):
        if inner.is_dir():
            inner.chmod(0o755)
    shutil.rmtree(folder)


@contextmanager
def _without_root() -> Iterator[None]:
    """File permissions as an ordinary account meets them; root, who runs CI, may write anything."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.setresgid(NOBODY, NOBODY, 0)
        os.setresuid(NOBODY, NOBODY, 0)  # root stays the saved id, to come back to
    except PermissionError:
        os.setresgid(0, 0, 0)
        pytest.skip("this process may not take another account's id")
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)


def _export_read_only(url: str, path: Path, out: Path) -> list[dict]:
    """Export `url` as a reader who may write neither the database nor its folder."""
    out.mkdir()
    out.chmod(0o777)
    # Once as root first, from a database in memory: the imports export needs are done while root's Python
    # installation can be read, and no connection is left open on this one.
    assert main(["export", "--db", "sqlite://", "--format", "csv", "--out", str(out / "as root")]) == 0
    path.chmod(0o444)
    path.parent.chmod(0o555)
    with _without_root():
        assert main(["export", "--db", url, "--format", "csv", "--out", str(out / "reader")]) == 0
    with (out / "reader" / "annotations.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_read_only_database_in_a_read_only_folder_is_exported(shared_tmp):
    (shared_tmp / "db").mkdir()
    url, path = _saved_database(shared_tmp / "db")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # WAL would need -shm and -wal files beside it, which this reader may not make.
    assert len(_export_read_only(url, path, shared_tmp / "out")) == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_read_only_export_sees_the_changes_a_writer_has_not_merged_yet(shared_tmp):
    (shared_tmp / "db").mkdir()
    url, path = _saved_database(shared_tmp / "db")
    # An open connection keeps the next save in the -wal file, out of the database file itself.
    holder = sqlite3.connect(path)
    holder.execute("SELECT count(*) FROM annotations").fetchone()
    db = Database(url)
    save_annotation(db, case_id=1, mask=np.ones((2, 2)), author="dr", note="in the WAL only")
    db.dispose()
    try:
        rows = _export_read_only(url, path, shared_tmp / "out")
    finally:
        holder.close()
    assert [row["note"] for row in rows] == ["'+1 see -2", "in the WAL only"]


def test_read_only_database_that_needs_migrating_says_so(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Database(url, migrate=False)
    old.upgrade("0002")
    old.dispose()
    monkeypatch.setattr("anomascope.storage.db.writable", lambda path: False)
    with pytest.raises(StorageError, match=r"is read-only and its schema \(0002\) needs upgrading"):
        Database(url)


def test_export_refuses_an_existing_file_as_out(tmp_path, capsys):
    url, _ = _saved_database(tmp_path)
    (tmp_path / "taken").write_text("keep me")
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "taken")]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "taken").read_text() == "keep me"


def test_csv_cells_are_never_formulas(tmp_path):
    url, _ = _saved_database(tmp_path)
    db = Database(url)
    # Spreadsheets drop leading whitespace before they look for a formula.
    save_annotation(db, case_id=1, mask=np.ones((2, 2)), author="dr", label=" =1+1", note="\n\u00a0@2", threshold=-1)
    save_preset(db, bundle_id="b", name=" =cmd|' /C calc'!A0", value=-0.25, provenance="\r\n+x", actor="  -me")
    db.dispose()
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "annotations.csv").open(newline="") as f:
        first, spaced = list(csv.DictReader(f))
    assert first["label"] == '\'=HYPERLINK("http://example.invalid","click")'
    assert first["note"] == "'+1 see -2" and first["author"] == "'@dr"
    assert first["threshold"] == "-0.5"  # a number stays a number
    assert (spaced["author"], spaced["label"], spaced["note"]) == ("dr", "' =1+1", "'\n\u00a0@2")
    assert spaced["threshold"] == "-1.0" and spaced["case_id"] == "1"
    with (tmp_path / "out" / "presets.csv").open(newline="") as f:
        [preset] = list(csv.DictReader(f))
    assert (preset["name"], preset["provenance"], preset["actor"]) == ("' =cmd|' /C calc'!A0", "'\r\n+x", "'  -me")
    assert preset["value"] == "-0.25"


def test_a_cell_is_escaped_only_where_a_spreadsheet_would_run_it():
    from anomascope.app.export import inert_cell

    for cell in ("=1", " =1", "\n+1", "\t\t-1", "\r@x", "\u3000=1", "\t", "\r"):
        assert inert_cell(cell) == "'" + cell
    for cell in ("", " ", "a=1", "x -1", "1-2", " note", "'=1"):
        assert inert_cell(cell) == cell
    assert inert_cell(-3) == -3 and inert_cell(-0.5) == -0.5 and inert_cell(None) is None


@pytest.mark.parametrize(
    "statement",
    [
        update(TuningEntry).values(threshold=0.0),
        delete(TuningEntry),
        update(TuningSession).values(reader="someone else"),
        text("DELETE FROM tuning_sessions"),
    ],
)
def test_tuning_sessions_and_their_entries_are_append_only(db_url, statement):
    db = Database(db_url)
    tuning = start_tuning_session(
        db, bundle_id="b", readout="sano", reader="dr", worklist={"source": "x", "cases": ["a"]}
    )
    save_annotation(db, case_id=_case(db).id, mask=np.ones((2, 2)), author="dr", threshold=0.5, tuning=(tuning.id, 0))
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(statement)
    ((entry, _),) = tuning_entries(db, tuning.id).values()
    assert entry.threshold == 0.5
    db.dispose()
