"""Opening the database: SQLite (WAL, foreign keys) by default, PostgreSQL via DATABASE_URL; always migrated."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_DATA_DIR = Path("data")
DATABASE_FILE = "anomascope.sqlite"
SQLITE_BUSY_MS = 30_000


class StorageError(RuntimeError):
    """A database operation that did not happen; nothing was changed."""


def default_url() -> str:
    """DATABASE_URL if set, else SQLite in $ANOMASCOPE_DATA_DIR (default ./data)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    folder = Path(os.environ.get("ANOMASCOPE_DATA_DIR", DEFAULT_DATA_DIR))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DATABASE_FILE}"


class Database:
    """An engine and session factory for one database, migrated to the newest schema on open."""

    def __init__(self, url: str | None = None, migrate: bool = True):
        self.url = url or default_url()
        self.engine = _make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    def upgrade(self, revision: str = "head") -> None:
        with self.engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed whole, or rolled back whole with a StorageError."""
        session = self.sessions()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"database write failed and was rolled back: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0]}") from exc
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, issue BEGIN, so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # Writers queue for the lock at the start of a transaction instead of failing mid-way
        # when two processes save at once (SQLite's deferred BEGIN would deadlock-abort one).
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
