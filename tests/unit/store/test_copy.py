"""`apsisctl db copy` underneath: SQLite to PostgreSQL and back, interrupted and resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from apsis.store import CHUNK_SIZE, StoreError, open_store
from apsis.store.copy import copy_database, open_rows

from .conftest import make_run, transition_event

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

BIG = bytes(range(256)) * (CHUNK_SIZE // 256) + b"tail"  # two chunks


class Interrupted(Exception):
    pass


async def _fill(database: str) -> None:
    store = await open_store(database)
    try:
        job = {"job_id": "daily/load", "program": {"type": "shell", "command": "true"}}
        for i in range(1, 11):
            run = dict(make_run(f"r{i}", state="success", args={"n": str(i)}, labels=["l"]), job=job)
            await store.write([run], [{"run_id": f"r{i}", "message": f"m{i}"}],
                              [transition_event(run, "success")], clock="2024-02-01T00:00:00+00:00")
        await store.store_output_bytes("r3", "output", BIG)
        await store.store_output_bytes("r3", "output", BIG + b"!")  # a second version
        await store.allocate_run_ids(5)  # ids handed out, never used: not to be reused
        await store.trim_events(keep_count=8)
    finally:
        await store.close()


async def _copy(source: str, target: str, **kw: object):
    async with open_rows(source, target=False) as src, open_rows(target, target=True) as dst:
        return await copy_database(src, dst, chunk=3, **kw)  # type: ignore[arg-type]


async def _history(database: str) -> tuple:
    store = await open_store(database)
    try:
        ids = [f"r{i}" for i in range(1, 11)]
        return (await store.get_runs(ids), [await store.run_log(i) for i in ids],
                await store.get_run_job("r7"), await store.get_output("r3", "output"),
                await store.events_since(0), await store.last_seq(), await store.get_clock(),
                (await store.query_runs(args={"n": "4"}, labels=["l"])).runs,
                await store.count_runs_by_state(), await store.check())
    finally:
        await store.close()


async def test_copy_is_resumed_after_an_interruption(db_path: Path, pg_url: str) -> None:
    await _fill(str(db_path))

    def stop_after_first_batch(done: int, total: int) -> None:
        if done >= 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        await _copy(str(db_path), pg_url, progress=stop_after_first_batch)
    report = await _copy(str(db_path), pg_url)
    assert (report.runs_skipped, report.runs_copied, report.events_copied) == (3, 7, 8)
    assert report.mismatches == []
    assert report.counts["output_chunks"] == (2, 2)  # the current version only

    assert await _history(pg_url) == await _history(str(db_path))
    store = await open_store(pg_url)
    try:
        assert await store.allocate_run_ids(1) == ["r16"]
        assert await store.write([], [], [{"type": "daemon", "status": "x"}]) == [11]
    finally:
        await store.close()


async def test_copy_back_to_sqlite_gives_the_same_history(db_path: Path, pg_url: str) -> None:
    await _fill(pg_url)
    report = await _copy(pg_url, str(db_path))
    assert report.mismatches == [] and report.runs_copied == 10
    assert await _history(str(db_path)) == await _history(pg_url)


async def test_a_changed_run_is_copied_again_and_another_history_is_refused(
    db_path: Path, pg_url: str
) -> None:
    await _fill(str(db_path))
    await _copy(str(db_path), pg_url)
    store = await open_store(str(db_path))
    try:
        await store.write([make_run("r2", state="failure", args={"n": "2"}, labels=["l"])])
    finally:
        await store.close()
    report = await _copy(str(db_path), pg_url)
    assert (report.runs_copied, report.runs_skipped) == (1, 9)
    assert (await _history(pg_url))[0][1]["state"] == "failure"

    other = str(db_path.with_name("other.db"))
    store = await open_store(other)
    await store.close()
    with pytest.raises(StoreError, match="another history"):
        await _copy(other, pg_url)
