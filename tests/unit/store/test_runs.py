"""Writing runs with their log entries and events, and reading them back."""

from __future__ import annotations

import asyncio

import pytest

from apsis.store import Store, StoreError, open_store

from .conftest import make_run, raw_sql, transition_event

pytestmark = pytest.mark.timeout(30)


async def test_run_ids_increase_and_are_never_reused(database: str) -> None:
    store = await open_store(database)
    assert await store.allocate_run_ids(3) == ["r1", "r2", "r3"]
    await store.close()
    store = await open_store(database)
    try:
        assert await store.allocate_run_ids(2) == ["r4", "r5"]
        # A run written with a larger id moves the counter past it.
        await store.write([make_run("r100")])
        assert await store.allocate_run_ids(1) == ["r101"]
    finally:
        await store.close()


async def test_write_round_trips_the_run(store: Store) -> None:
    run = make_run("r1", args={"date": "2024-01-01"}, labels=["daily"], message="héllo ✓")
    entry = {
        "run_id": "r1",
        "ts": "2024-01-01T00:00:00+00:00",
        "state": "new",
        "message": "created",
    }
    event = transition_event(run, "new")
    seqs = await store.write([run], [entry], [event])
    assert seqs == [1]
    assert event["seq"] == 1
    assert await store.get_run("r1") == run
    assert await store.get_run("r2") is None
    assert await store.run_log("r1") == [entry]
    assert await store.events_since(0) == [event]


async def test_upsert_replaces_the_run(store: Store) -> None:
    await store.write([make_run("r1", args={"a": "1"})])
    await store.write([make_run("r1", state="scheduled", args={"a": "1"})])
    assert (await store.get_run("r1"))["state"] == "scheduled"
    counts = await store.count_runs_by_state()
    assert counts["new"] == 0 and counts["scheduled"] == 1
    assert sum(counts.values()) == 1


async def test_failing_write_leaves_nothing(store: Store) -> None:
    await store.write([make_run("r1")], [], [{"type": "daemon", "status": "started"}])
    event = transition_event(make_run("r2"), "new")
    with pytest.raises(StoreError):
        # The log entry names a run that does not exist: the whole write is refused.
        await store.write(
            [make_run("r2")],
            [{"run_id": "r999", "ts": "2024-01-01T00:00:00Z", "message": "x"}],
            [event],
            clock="2030-01-01T00:00:00+00:00",
        )
    assert "seq" not in event
    assert await store.get_run("r2") is None
    assert await store.last_seq() == 1
    assert await store.get_clock() is None
    assert (await store.count_runs_by_state())["new"] == 1
    # And the next write gets the next seq, not a gap.
    assert await store.write([], [], [{"type": "daemon", "status": "x"}]) == [2]


async def test_bad_run_is_a_store_error_with_its_id(store: Store) -> None:
    with pytest.raises(StoreError, match="r7"):
        await store.write([{"run_id": "r7", "state": "new"}])  # no job_id
    with pytest.raises(StoreError, match="not a run id"):
        await store.write([make_run("x7")])


async def test_write_is_atomic_under_cancellation(store: Store) -> None:
    runs = [make_run(f"r{i}") for i in range(1, 501)]
    events = [transition_event(r, "new") for r in runs]
    task = asyncio.create_task(store.write(runs, [], events))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.write()  # queues behind the cancelled write, which runs to its end
    # The transaction ran to its end: all or nothing, and seqs stay consistent.
    stored = len(await store.get_runs([r["run_id"] for r in runs]))
    assert stored in (0, 500)
    next_seq = (await store.write([], [], [{"type": "daemon", "status": "x"}]))[0]
    assert next_seq == (await store.last_seq())
    assert next_seq == (501 if stored else 1)


async def test_clock_moves_with_the_write(store: Store) -> None:
    assert await store.get_clock() is None
    await store.write([make_run("r1")], clock="2024-01-01T00:00:00+00:00")
    assert await store.get_clock() == "2024-01-01T00:00:00+00:00"
    await store.set_clock("2024-01-02T00:00:00+00:00")
    assert await store.get_clock() == "2024-01-02T00:00:00+00:00"


async def test_get_runs_keeps_the_order_asked(store: Store) -> None:
    await store.write([make_run(f"r{i}") for i in range(1, 6)])
    runs = await store.get_runs(["r4", "r9", "r1", "r3"])
    assert [r["run_id"] for r in runs] == ["r4", "r1", "r3"]


async def test_unfinished_runs_load(store: Store) -> None:
    states = [
        "new",
        "scheduled",
        "waiting",
        "starting",
        "running",
        "stopping",
        "success",
        "failure",
        "error",
        "skipped",
    ]
    await store.write([make_run(f"r{i}", state=s) for i, s in enumerate(states, 1)])
    unfinished = await store.load_unfinished_runs()
    assert sorted(r["state"] for r in unfinished) == sorted(states[:6])
    counts = await store.count_runs_by_state()
    assert set(counts) == set(states) and set(counts.values()) == {1}


async def test_job_definitions_are_stored_once(store: Store, database: str) -> None:
    job = {"job_id": "daily/load", "program": {"type": "shell", "command": "true"}}
    same = {"program": {"command": "true", "type": "shell"}, "job_id": "daily/load"}
    other = {"job_id": "daily/load", "program": {"type": "shell", "command": "false"}}
    await store.write([dict(make_run("r1"), job=job), dict(make_run("r2"), job=same)])
    await store.write([dict(make_run("r3"), job=other)])
    # A later write without "job" keeps the link.
    await store.write([make_run("r1", state="scheduled")])
    assert await store.get_run_job("r1") == job
    assert await store.get_run_job("r2") == job
    assert await store.get_run_job("r3") == other
    assert "job" not in await store.get_run("r1")
    assert await raw_sql(database, "SELECT count(*) FROM jobdefs") == [(2,)]


async def test_a_run_written_twice_in_one_write_ends_as_its_last_row(store: Store) -> None:
    """Rows with a job definition and rows without go in by different statements: the
    order of one write is still kept (the writer's batches hold a run once, other callers
    may not)."""
    job = {"job_id": "daily/load", "program": {"type": "no-op"}}
    await store.write([dict(make_run("r1"), job=job), make_run("r1", state="scheduled"),
                       make_run("r2", state="scheduled"), dict(make_run("r2"), job=job)])
    assert (await store.get_run("r1"))["state"] == "scheduled"
    assert (await store.get_run("r2"))["state"] == "new"
    assert await store.get_run_job("r1") == job and await store.get_run_job("r2") == job
    counts = await store.count_runs_by_state()
    assert (counts["scheduled"], counts["new"], sum(counts.values())) == (1, 1, 2)


async def test_run_without_job_has_no_definition(store: Store) -> None:
    await store.write([make_run("r1")])
    assert await store.get_run_job("r1") is None
    assert await store.get_run_job("r2") is None


async def test_run_log_keeps_order(store: Store) -> None:
    await store.write([make_run("r1")])
    entries = [
        {"run_id": "r1", "ts": f"2024-01-01T00:00:0{i}+00:00", "state": None, "message": f"m{i}"}
        for i in range(5)
    ]
    await store.write([], entries[:2])
    await store.write([], entries[2:])
    assert await store.run_log("r1") == entries


async def test_concurrent_writes_and_reads(store: Store) -> None:
    async def writer(start: int) -> None:
        for i in range(start, start + 20):
            run = make_run(f"r{i}")
            await store.write([run], [], [transition_event(run, "new")])

    async def reader() -> None:
        for _ in range(20):
            await store.query_runs(limit=10)

    await asyncio.gather(writer(1), writer(101), reader(), reader())
    assert await store.last_seq() == 40
    seqs = [e["seq"] for e in await store.events_since(0)]
    assert seqs == list(range(1, 41))


async def test_a_batch_of_runs_is_stored_as_written(store: Store) -> None:
    """A burst's write (many runs, log entries, events at once) keeps every value and type:
    SQLite takes those rows in one JSON parameter."""
    job = {"job_id": "daily/load", "program": {"type": "no-op"}}
    runs = [make_run(f"r{i}", args={"n": str(i), "q": 'say "ü"'}, labels=["a", "b"][: i % 3],
                     job=job, exit_code=i if i % 2 else None) for i in range(1, 6)]
    entries = [{"run_id": r["run_id"], "ts": "2024-01-01T00:00:00Z", "state": None,
                "message": f"line\n{i} ✓"} for i, r in enumerate(runs)]
    await store.write(runs, entries, [transition_event(r, "new") for r in runs])
    again = [{**r, "state": "success", "args": {"n": "x"}, "labels": ["c"]} for r in runs[:3]]
    await store.write(again, [], [transition_event(r, "success") for r in again])
    stored = await store.get_runs([r["run_id"] for r in runs])
    want = [{k: v for k, v in r.items() if k != "job"} for r in again + runs[3:]]
    assert stored == want
    assert await store.get_run_job("r5") == job
    assert (await store.count_runs_by_state())["success"] == 3
    page = await store.query_runs(labels=["c"], args={"n": "x"})
    assert sorted(r["run_id"] for r in page.runs) == ["r1", "r2", "r3"]
    assert sorted(r["run_id"] for r in (await store.query_runs(labels=["a"])).runs) == ["r4", "r5"]
    assert [e["message"] for e in await store.run_log("r2")] == ["line\n1 ✓"]
    assert [e["run"]["run_id"] for e in await store.events_since(0, run_id="r5")] == ["r5"]
