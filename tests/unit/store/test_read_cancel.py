"""Reads cut short by cancellation (a websocket client leaving) leave the store usable.

Issue 11.1: a read transaction whose task was cancelled stayed open, and every later
read failed with "cannot start a transaction within a transaction".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from apsis.store import Store

from .conftest import make_run, transition_event

pytestmark = pytest.mark.timeout(60)

Read = Callable[[Store], Awaitable[object]]

READS: dict[str, Read] = {
    "query_runs": lambda s: s.query_runs(labels=["a"]),
    "first_retained_seq": lambda s: s.first_retained_seq(),
    "get_output": lambda s: s.get_output("r1", "output", 5, 9000),
    "stats": lambda s: s.stats(),
}


@pytest.mark.parametrize("name", sorted(READS))
async def test_cancelled_reads_at_any_point_leave_reads_working(store: Store, name: str) -> None:
    run = make_run("r1", labels=["a"])
    await store.write([run], events=[transition_event(run, "new")])
    await store.store_output_bytes("r1", "output", b"x" * 10_000)
    read = READS[name]
    # Cancel after 0, 1, 2... loop turns: once while waiting for BEGIN, once mid-query...
    for turns in range(40):
        task = asyncio.ensure_future(read(store))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    later = make_run("r2", labels=["a"])
    await store.write([later], events=[transition_event(later, "new")])
    page = await store.query_runs(labels=["a"])
    assert [r["run_id"] for r in page.runs] == ["r2", "r1"]
    assert page.seq == 2
    assert await store.get_output("r1", "output", 0, 3) == b"xxx"
    assert (await store.stats())["last_seq"] == 2
    assert await store.read_problem() is None


@pytest.mark.sqlite_only  # closes SQLite's reader connection
async def test_read_problem_names_a_closed_reader(store: Store) -> None:
    await store._reader.close()
    problem = await store.read_problem()
    assert problem is not None and store.path in problem
