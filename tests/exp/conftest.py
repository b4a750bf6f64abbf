"""Fixtures of the experiment-layer tests: fresh PostgreSQL databases (the SQLite stores are in
tests/conftest.py)."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy
from pg_server import PG_URL


@pytest.fixture
def pg_database():
    """Factory of fresh, empty databases on the test server (dropped afterwards)."""
    admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    made = []

    def make(kind: str) -> str:
        name = f"remdinet_{kind}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{PG_URL.rsplit('/', 1)[0]}/{name}"

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
