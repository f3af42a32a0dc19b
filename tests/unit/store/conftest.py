"""Fixtures for the store tests: a fresh database per test, and run dicts.

Every test that takes `store` or `database` runs on both backends, SQLite and
PostgreSQL (tests/pg.py), unless marked `sqlite_only` (a test of SQLite's own files,
pragmas or locks). `db_path` is always a SQLite file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from apsis.store import is_database_url, open_store
from apsis.store.base import RunStore
from tests.pg import PgServer

BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", BACKENDS[:1] if sqlite_only else BACKENDS)


def make_run(
    run_id: str,
    *,
    job_id: str = "daily/load",
    state: str = "new",
    schedule: str | None = "2024-01-01T00:00:00+00:00",
    args: dict[str, str] | None = None,
    labels: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A run dict shaped like the API's run object."""
    times: dict[str, str] = {}
    if schedule is not None:
        times["schedule"] = schedule
        times["new"] = schedule
    run = {
        "run_id": run_id,
        "job_id": job_id,
        "args": args if args is not None else {},
        "state": state,
        "labels": labels if labels is not None else [],
        "times": times,
        "message": None,
        "program": {"type": "shell", "command": "true"},
        "conditions": [],
        "actions": [],
        "rerun_of": None,
        "attempt": 1,
        "exit_code": None,
        "signal": None,
        "outputs": [],
        "ad_hoc": False,
    }
    run.update(extra)
    return run


def transition_event(run: dict[str, Any], to: str) -> dict[str, Any]:
    return {
        "type": "run_transition",
        "run": {"run_id": run["run_id"], "job_id": run["job_id"]},
        "from": None,
        "to": to,
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "apsis.db"


@pytest.fixture
def database(backend: str, db_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database: a SQLite path or a PostgreSQL URL, as `open_store` takes them."""
    if backend != "postgresql":
        yield str(db_path)
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create_database(template=request.getfixturevalue("pg_schema_template"))
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
async def store(database: str) -> AsyncIterator[RunStore]:
    store = await open_store(database)
    try:
        yield store
    finally:
        await store.close()


async def raw_sql(database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Runs one statement (`?` placeholders) behind the store's back, on either backend:
    to look at what the store does not show, or to break it on purpose."""
    if is_database_url(database):
        import asyncpg

        from apsis.store.query import numbered

        conn = await asyncpg.connect(database)
        try:
            return [tuple(row) for row in await conn.fetch(numbered(sql), *params)]
        finally:
            await conn.close()
    lite = sqlite3.connect(database)
    try:
        rows = lite.execute(sql, params).fetchall()
        lite.commit()
        return rows
    finally:
        lite.close()
