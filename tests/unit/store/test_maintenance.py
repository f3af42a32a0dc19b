"""Maintenance: archive, check, vacuum, stats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from apsis.store import Store, StoreError

from .conftest import make_run, raw_sql

pytestmark = pytest.mark.timeout(60)

CUT = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _at(days: int) -> str:
    return (CUT + dt.timedelta(days=days)).isoformat()


async def _fill(store: Store) -> None:
    job_a = {"job_id": "a", "program": "one"}
    job_b = {"job_id": "b", "program": "two"}
    runs = [
        dict(
            make_run("r1", state="success", schedule=_at(-10), args={"x": "1"}, labels=["old"]),
            job=job_a,
        ),
        dict(make_run("r2", state="failure", schedule=_at(-5)), job=job_b),
        dict(make_run("r3", state="running", schedule=_at(-5)), job=job_a),  # unfinished
        dict(make_run("r4", state="success", schedule=_at(+1)), job=job_a),  # too new
        make_run("r5", state="skipped", schedule=_at(-1)),
    ]
    log = [{"run_id": r["run_id"], "ts": _at(0), "state": r["state"], "message": "m"} for r in runs]
    await store.write(runs, log)
    await store.store_output_bytes("r1", "output", b"out1\xff" * 1000)
    await store.store_output_bytes("r2", "output", b"out2")


async def test_archive_moves_finished_old_runs(store: Store, database: str, tmp_path: Path) -> None:
    await _fill(store)
    archive_path = tmp_path / "archive.db"
    calls: list[tuple[int, int]] = []
    moved = await store.archive(
        CUT, archive_path, chunk=2, progress=lambda d, t: calls.append((d, t))
    )
    assert moved == 3  # r1, r2, r5
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)

    assert await store.get_runs(["r1", "r2", "r3", "r4", "r5"]) == [
        await store.get_run("r3"),
        await store.get_run("r4"),
    ]
    assert await store.run_log("r1") == []
    assert await store.get_output("r1", "output") is None
    assert (await store.count_runs_by_state())["success"] == 1
    assert await store.check() == []
    # Ids stay unique: the counter is not lowered by the move.
    assert await store.allocate_run_ids(1) == ["r6"]
    # The job definition only r2 used is gone from the main database.
    assert await raw_sql(database, "SELECT count(*) FROM jobdefs") == [(1,)]

    archive = await Store.open(archive_path, readonly=True)
    try:
        page = await archive.query_runs(limit=10)
        assert [r["run_id"] for r in page.runs] == ["r5", "r2", "r1"]
        assert await archive.get_output("r1", "output") == b"out1\xff" * 1000
        assert await archive.get_run_job("r1") == {"job_id": "a", "program": "one"}
        assert await archive.get_run_job("r2") == {"job_id": "b", "program": "two"}
        assert [e["message"] for e in await archive.run_log("r2")] == ["m"]
        assert (await archive.query_runs(args={"x": "1"}, labels=["old"])).runs[0]["run_id"] == "r1"
        assert await archive.check() == []
    finally:
        await archive.close()


async def test_archive_twice_and_resume(store: Store, tmp_path: Path) -> None:
    await _fill(store)
    archive_path = tmp_path / "archive.db"
    # An interrupted earlier move left r1 in the archive already.
    assert await store.archive(CUT - dt.timedelta(days=7), archive_path) == 1
    await store.write([make_run("r1", state="success", schedule=_at(-10))])  # back again
    assert await store.archive(CUT, archive_path) == 3
    assert await store.archive(CUT, archive_path) == 0
    archive = await Store.open(archive_path, readonly=True)
    try:
        assert (await archive.stats())["runs"] == 3
        assert await archive.check() == []
    finally:
        await archive.close()


@pytest.mark.sqlite_only  # a PostgreSQL database is never a file
async def test_archive_must_be_another_file(store: Store) -> None:
    with pytest.raises(StoreError, match="another file"):
        await store.archive(CUT, store.path)


async def test_check_finds_broken_counters(store: Store, database: str) -> None:
    await _fill(store)
    assert await store.check() == []
    await raw_sql(database, "UPDATE run_counts SET n = n + 5 WHERE state = 'success'")
    problems = await store.check()
    assert len(problems) == 1 and "run counts" in problems[0]


async def test_vacuum_drops_leftover_chunks(store: Store, database: str) -> None:
    await _fill(store)
    await raw_sql(
        database,
        "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
        "VALUES (1, 'output', 99, 0, 0, 1, ?)", b"\x00")
    assert any("interrupted" in p for p in await store.check())
    await store.vacuum()
    assert await store.check() == []
    assert await store.get_output("r1", "output") == b"out1\xff" * 1000


async def test_stats(store: Store) -> None:
    await _fill(store)
    stats = await store.stats()
    assert stats["runs"] == 5 and stats["runs_by_state"]["success"] == 2
    assert stats["file_bytes"] > 0 and stats["last_seq"] == 0
