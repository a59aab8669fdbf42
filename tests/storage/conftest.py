"""Databases for the storage tests: SQLite always; PostgreSQL where ANOMASCOPE_TEST_POSTGRES_URL names
a server (CI starts one with .ci/postgres.sh)."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get("ANOMASCOPE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'anomascope.sqlite'}"
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


def test_postgres_is_tested_in_ci():
    """CI must exercise PostgreSQL, not skip it silently."""
    if os.environ.get("CI"):
        assert POSTGRES_URL, "CI runs without ANOMASCOPE_TEST_POSTGRES_URL: .ci/run should start PostgreSQL"
