"""Opening the database: SQLite (WAL, foreign keys) by default, PostgreSQL via DATABASE_URL.

A database is checked before it is used: a URL that cannot be parsed, a driver that is not installed,
a server that cannot be reached, a file that is not a database, another application's tables or a
schema from a newer Anomascope each give one StorageError sentence. It is migrated only when its
schema is older than this version's, so a read-only database at the current schema can be exported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_DATA_DIR = Path("data")
DATABASE_FILE = "anomascope.sqlite"
SQLITE_BUSY_MS = 30_000
MIGRATION_LOCK = int.from_bytes(b"anomasco", "big")  # PostgreSQL advisory lock key held while migrating


class StorageError(RuntimeError):
    """A database operation that did not happen; nothing was changed."""


def default_url(create_folder: bool = True) -> str:
    """DATABASE_URL if set, else SQLite in $ANOMASCOPE_DATA_DIR (default ./data), whose folder is made unless
    `create_folder` is false."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    folder = Path(os.environ.get("ANOMASCOPE_DATA_DIR", DEFAULT_DATA_DIR))
    if create_folder:
        folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DATABASE_FILE}"


def exists(url: str) -> bool:
    """False for an SQLite file that is not there yet (opening it would create it); true otherwise."""
    path = _sqlite_path(_parse(url))
    return path is None or path.exists()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise StorageError(f"no schema migrations found in {MIGRATIONS}: the installation is incomplete")
    return head


class Database:
    """An engine and session factory for one database, checked on open and migrated when it is older."""

    def __init__(self, url: str | None = None, migrate: bool = True):
        self.url = url or default_url()
        parsed = _parse(self.url)
        self.shown = parsed.render_as_string(hide_password=True)  # for messages: never the password
        self.read_only = _read_only_sqlite(parsed)
        self.engine = _make_engine(parsed, self.shown, self.read_only)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        revision = self._checked_revision()
        if self.engine.dialect.name == "sqlite" and not self.read_only:
            # Readers never wait for a writer. Set only once the file is known to be ours: the journal
            # mode is written into the file itself.
            connection = self.engine.raw_connection()  # outside any transaction, as SQLite requires
            try:
                connection.cursor().execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
        if migrate and revision != head_revision():
            if self.read_only:
                raise StorageError(
                    f"{self.shown} is read-only and its schema ({revision or 'empty'}) needs upgrading "
                    f"to {head_revision()}; open it once where it can be written"
                )
            self.upgrade()

    def upgrade(self, revision: str = "head") -> None:
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Servers started at once on an empty database would create the same types and clash;
                    # the lock queues them, and the later ones find the schema already at its head.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"{self.shown}: migrating the schema failed and was rolled back ({_first_line(exc)})"
            ) from exc

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def _checked_revision(self) -> str | None:
        """The schema revision, after checking that this is a database this version can use."""
        try:
            with self.engine.connect() as connection:
                tables = set(inspect(connection).get_table_names())
                revision = (
                    connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                    if "alembic_version" in tables
                    else None
                )
        except SQLAlchemyError as exc:
            raise StorageError(_open_failure(self.shown, exc)) from exc
        if tables and revision is None:
            raise StorageError(
                f"{self.shown} holds another application's tables ({', '.join(sorted(tables)[:5])}) "
                "and no Anomascope schema; give a new database"
            )
        if revision is not None:
            try:
                ScriptDirectory.from_config(_alembic_config()).get_revision(revision)
            except CommandError:
                raise StorageError(
                    f"{self.shown} has schema revision {revision!r}, which this Anomascope (schema "
                    f"{head_revision()}) does not know: a newer Anomascope or another application "
                    "wrote it"
                ) from None
        return revision

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed whole, or rolled back whole with a StorageError."""
        session = self.sessions()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database write failed and was rolled back: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"the database URL {url.split('@')[-1]!r} cannot be parsed (expected e.g. "
            "sqlite:///data/anomascope.sqlite or postgresql+psycopg2://user:password@host/name)"
        ) from exc


def _sqlite_path(url: URL) -> Path | None:
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    name = url.database.removeprefix("file:") if url.query.get("uri") else url.database
    return Path(name)


def _read_only_sqlite(url: URL) -> bool:
    """An SQLite file this process cannot write, or one the URL opens read-only (mode=ro)."""
    path = _sqlite_path(url)
    if path is None:
        return False
    return url.query.get("mode") == "ro" or (path.exists() and not writable(path))


def writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _read_only_url(url: URL, path: Path) -> URL:
    """The URL that opens `path` read-only. A WAL database needs -shm and -wal files beside it even to be
    read; where this process can make neither, and none is there, it is opened as immutable instead."""
    if url.query.get("mode") != "ro":
        url = URL.create("sqlite", database=f"file:{path}", query={"mode": "ro", "uri": "true"})
    return url.update_query_dict({"immutable": "1"}) if _closed_to_us(path) else url


def _closed_to_us(path: Path) -> bool:
    """Whether SQLite may take the file as unchanging while we read it. With no -wal or -shm beside it, no
    connection has it open and every commit is in the file itself; this process can write neither the file
    nor its folder, so nothing here can start changing it. (Immutable skips the -wal file and all locking:
    while one is there, a writer's commits may still be in it, and mode=ro reads them.)"""
    beside = (path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm"))
    return not writable(path) and not writable(path.parent) and not any(p.exists() for p in beside)


def _make_engine(url: URL, shown: str, read_only: bool) -> Engine:
    try:
        if not url.drivername.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True)
        path = _sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise StorageError(f"{shown}: the folder {path.parent} does not exist")
        if read_only and path is not None:
            url = _read_only_url(url, path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StorageError(f"{shown}: no installed database driver for {url.drivername!r} ({exc})") from exc
    except ArgumentError as exc:
        raise StorageError(f"{shown}: not a usable database URL ({exc})") from exc

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, issue BEGIN, so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # Writers queue for the lock at the start of a transaction instead of failing mid-way
        # when two processes save at once (SQLite's deferred BEGIN would deadlock-abort one).
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _open_failure(shown: str, exc: SQLAlchemyError) -> str:
    text = _first_line(getattr(exc, "orig", None) or exc)
    if "file is not a database" in text:
        return f"{shown} is not an SQLite database (another kind of file, or a damaged one)"
    if "unable to open database file" in text:
        return f"{shown}: the database file cannot be opened (check that this user may read and write it)"
    return f"cannot open the database at {shown} ({text})"
