"""Opening: migrations, re-opening, read-only, and the lock against a second daemon."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from apsis.store import SCHEMA_VERSION, Store, StoreError, StoreLockedError

from .conftest import make_run, raw_sql

pytestmark = pytest.mark.timeout(30)


async def test_new_database_is_migrated(db_path: Path) -> None:
    store = await Store.open(db_path)
    try:
        assert db_path.exists()
        assert await store.migrate() == []  # nothing left to apply
        stats = await store.stats()
        assert stats["schema_version"] == SCHEMA_VERSION
        assert stats["runs"] == 0
    finally:
        await store.close()


async def test_reopen_keeps_data(db_path: Path) -> None:
    store = await Store.open(db_path)
    [run_id] = await store.allocate_run_ids(1)
    await store.write([make_run(run_id)])
    await store.set_clock("2024-01-01T00:00:00+00:00")
    await store.close()

    store = await Store.open(db_path)
    try:
        assert (await store.get_run(run_id))["run_id"] == run_id
        assert await store.get_clock() == "2024-01-01T00:00:00+00:00"
        assert await store.allocate_run_ids(1) == ["r2"]
    finally:
        await store.close()


async def test_create_false_and_readonly_need_a_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        await Store.open(tmp_path / "missing.db", create=False)
    with pytest.raises(StoreError, match="no database"):
        await Store.open(tmp_path / "missing.db", readonly=True)


async def test_readonly_reads_while_locked_and_refuses_writes(db_path: Path) -> None:
    writer = await Store.open(db_path)
    try:
        await writer.write([make_run("r1")])
        reader = await Store.open(db_path, readonly=True)
        try:
            assert (await reader.get_run("r1"))["run_id"] == "r1"
            with pytest.raises(StoreError, match="read-only"):
                await reader.write([make_run("r2")])
        finally:
            await reader.close()
    finally:
        await writer.close()


async def test_second_store_in_process_is_refused(db_path: Path) -> None:
    store = await Store.open(db_path)
    try:
        with pytest.raises(StoreLockedError) as info:
            await Store.open(db_path)
        assert f"pid {os.getpid()}" in str(info.value)
        assert "apsisctl shutdown" in str(info.value)
    finally:
        await store.close()
    # Released on close.
    again = await Store.open(db_path)
    await again.close()


async def test_second_process_is_refused_with_a_clear_message(db_path: Path) -> None:
    store = await Store.open(db_path)
    try:
        script = textwrap.dedent(
            f"""
            import asyncio, sys
            from apsis.store import Store, StoreLockedError
            async def main():
                try:
                    await Store.open({str(db_path)!r})
                except StoreLockedError as exc:
                    print(exc, file=sys.stderr)
                    sys.exit(3)
                sys.exit(0)
            asyncio.run(main())
            """
        )
        # In a thread: the lock holder's event loop must stay free meanwhile.
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert proc.returncode == 3, proc.stderr
        assert "in use by another Apsis daemon" in proc.stderr
        assert f"pid {os.getpid()}" in proc.stderr
    finally:
        await store.close()


async def test_newer_schema_is_refused(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="upgrade Apsis"):
        await Store.open(db_path)
    # A failed open leaves no lock behind.
    with pytest.raises(StoreError, match="upgrade Apsis"):
        await Store.open(db_path)


async def test_a_new_migration_is_applied_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apsis.store import schema

    store = await Store.open(db_path)
    await store.write([make_run("r1")])
    await store.close()

    v2 = "ALTER TABLE runs ADD COLUMN note TEXT;\nCREATE INDEX runs_note ON runs (note);"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))

    # A reader does not migrate: it says what to do.
    with pytest.raises(StoreError, match="apsisctl db migrate"):
        await Store.open(db_path, readonly=True)

    store = await Store.open(db_path)
    try:
        assert await store.migrate() == []
        assert (await store.stats())["schema_version"] == SCHEMA_VERSION + 1
        assert (await store.get_run("r1"))["run_id"] == "r1"
    finally:
        await store.close()
    store = await Store.open(db_path)  # re-open: nothing to apply, no error
    await store.close()


async def test_a_version_2_database_upgrades_and_keeps_its_runs(
    backend: str, db_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 replaced SQLite's triggers that keep args and labels: a database made
    before it keeps its runs, and its args and labels still follow the runs' JSON."""
    from apsis.store import open_store, pg_schema, schema

    database = str(db_path) if backend == "sqlite" else request.getfixturevalue("pg_url")
    module = schema if backend == "sqlite" else pg_schema
    with monkeypatch.context() as old:
        old.setattr(module, "MIGRATIONS", module.MIGRATIONS[:2])
        old.setattr(module, "SCHEMA_VERSION", 2)
        store = await open_store(database)
        await store.write([make_run("r1", args={"n": "1"}, labels=["a"]),
                           make_run("r2", args={"n": "2"}, labels=["b"])])
        await store.close()
    assert await raw_sql(database, "SELECT version FROM schema_version") == [(2,)]

    store = await open_store(database)
    try:
        assert await raw_sql(database, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert (await store.get_run("r2"))["labels"] == ["b"]
        # r1 changes state only; r2 gets other args and labels.
        await store.write([make_run("r1", state="running", args={"n": "1"}, labels=["a"]),
                           make_run("r2", state="running", args={"n": "3"}, labels=["c", "c"])])

        async def found(**filters: Any) -> list[str]:
            return [run["run_id"] for run in (await store.query_runs(**filters)).runs]

        assert await found(args={"n": "1"}, labels=["a"]) == ["r1"]
        assert await found(args={"n": "3"}, labels=["c"]) == ["r2"]
        assert await found(args={"n": "2"}) == [] and await found(labels=["b"]) == []
        assert await raw_sql(database, "SELECT label FROM run_labels WHERE run_num = 2") == [("c",)]
    finally:
        await store.close()


async def test_failed_migration_leaves_the_old_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apsis.store import schema

    store = await Store.open(db_path)
    await store.close()
    bad = "CREATE TABLE extra (x);\nTHIS IS NOT SQL;"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, bad])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(db_path)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'extra'").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("link", ["symlink", "hard link"])
async def test_another_name_of_the_file_meets_the_same_lock(db_path: Path, link: str) -> None:
    store = await Store.open(db_path)
    alias = db_path.parent / "other" / "alias.db"
    alias.parent.mkdir()
    alias.symlink_to(db_path) if link == "symlink" else os.link(db_path, alias)
    try:
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            await Store.open(alias)
        with pytest.raises(StoreError, match="another file than the database"):
            await store.archive("2100-01-01T00:00:00Z", alias)
        # The refused open left the holder's connections alone.
        await store.write([make_run("r1")])
    finally:
        await store.close()
    again = await Store.open(alias)
    assert (await again.get_run("r1"))["run_id"] == "r1"
    await again.close()


async def test_both_backends_keep_the_store_contract(store: Store) -> None:
    from apsis.store.base import RunStore

    assert isinstance(store, RunStore)


@pytest.mark.postgres
async def test_postgres_second_daemon_is_refused_until_the_first_dies(pg_url: str) -> None:
    from apsis.store import open_store

    with pytest.raises(StoreError, match="no Apsis database"):
        await open_store(pg_url, readonly=True)
    # Another process holds the database, then is killed: its lock goes with its session.
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(f"""
            import asyncio, sys
            from apsis.store import open_store
            async def main():
                store = await open_store({pg_url!r})
                await store.write([], [], [{{"type": "daemon", "status": "up"}}])
                print("open", flush=True)
                await asyncio.sleep(60)
            asyncio.run(main())
        """), stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 20) == b"open\n"
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            await open_store(pg_url)
        reader = await open_store(pg_url, readonly=True)
        try:
            assert await reader.last_seq() == 1
            with pytest.raises(StoreError, match="read-only"):
                await reader.allocate_run_ids(1)
        finally:
            await reader.close()
    finally:
        holder.kill()
        await holder.wait()
    store = await open_store(pg_url)
    try:
        assert await store.write([], [], [{"type": "daemon", "status": "again"}]) == [2]
    finally:
        await store.close()
