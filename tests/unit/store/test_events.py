"""The event log: strictly increasing seqs, filters, bounded retention."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from apsis.store import Store, open_store
from apsis.store.errors import StoreError

from .conftest import make_run, transition_event

pytestmark = pytest.mark.timeout(30)


def _daemon(status: str, ts: str | None = None) -> dict:
    event = {"type": "daemon", "status": status}
    if ts is not None:
        event["ts"] = ts
    return event


async def test_seq_increases_across_reopen_and_trim(database: str) -> None:
    store = await open_store(database)
    assert await store.write([], [], [_daemon("a"), _daemon("b")]) == [1, 2]
    await store.close()

    store = await open_store(database)
    try:
        assert await store.last_seq() == 2
        assert await store.write([], [], [_daemon("c")]) == [3]
        assert await store.trim_events(keep_count=0) == 3
        assert await store.events_since(0) == []
        assert await store.last_seq() == 3
        assert await store.first_retained_seq() == 4
    finally:
        await store.close()

    # Even with every event trimmed, a reopened store goes on from the last seq.
    store = await open_store(database)
    try:
        assert await store.write([], [], [_daemon("d")]) == [4]
        assert await store.first_retained_seq() == 4
    finally:
        await store.close()


async def test_events_since_filters(store: Store) -> None:
    r1 = make_run("r1", job_id="a/one")
    r2 = make_run("r2", job_id="b/two")
    await store.write(
        [r1, r2],
        [],
        [
            transition_event(r1, "new"),
            transition_event(r2, "new"),
            {"type": "run_log", "run_id": "r1", "entry": {"message": "hi"}},
            {"type": "output_appended", "run_id": "r2", "output_id": "output", "length": 3},
            {"type": "job_changed", "job": {"job_id": "a/one"}},
            _daemon("started"),
        ],
    )

    def seqs(events: list[dict]) -> list[int]:
        return [e["seq"] for e in events]

    assert seqs(await store.events_since(0)) == [1, 2, 3, 4, 5, 6]
    assert seqs(await store.events_since(4)) == [5, 6]
    assert seqs(await store.events_since(0, limit=2)) == [1, 2]
    assert seqs(await store.events_since(0, run_id="r1")) == [1, 3]
    assert seqs(await store.events_since(0, job_id="a/one")) == [1, 5]
    assert seqs(await store.events_since(0, types=["run_log", "daemon"])) == [3, 6]
    assert seqs(await store.events_since(0, types=[])) == []
    assert seqs(await store.events_since(1, run_id="r2", types=["output_appended"])) == [4]
    event = (await store.events_since(2, limit=1))[0]
    assert event["entry"] == {"message": "hi"} and "ts" in event


async def test_trim_by_count_keeps_the_newest(store: Store) -> None:
    await store.write([], [], [_daemon(str(i)) for i in range(10)])
    assert await store.trim_events(keep_count=4) == 6
    assert [e["seq"] for e in await store.events_since(0)] == [7, 8, 9, 10]
    assert await store.first_retained_seq() == 7


async def test_trim_by_age(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    old = (now - dt.timedelta(hours=2)).isoformat()
    new = (now - dt.timedelta(minutes=1)).isoformat()
    await store.write([], [], [_daemon("old", old), _daemon("old", old), _daemon("new", new)])
    assert await store.trim_events(keep_seconds=3600) == 2
    assert [e["status"] for e in await store.events_since(0)] == ["new"]
    assert await store.trim_events() == 0


async def test_trim_in_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from apsis.store import common as store_module

    monkeypatch.setattr(store_module, "_TRIM_BATCH", 3)
    await store.write([], [], [_daemon(str(i)) for i in range(10)])
    assert await store.trim_events(keep_count=1) == 9
    assert await store.first_retained_seq() == 10


async def test_empty_store_positions(store: Store) -> None:
    assert await store.last_seq() == 0
    assert await store.first_retained_seq() == 1
    assert await store.events_since(0) == []


async def test_encoded_texts_are_the_stored_events(store: Store) -> None:
    """The stream sends the texts `write` hands back: each is the event as stored, its
    seq included, so a live client and one replaying read the same events."""
    r1 = make_run("r1")
    events = [transition_event(r1, "new"), _daemon("started"),
              {"type": "run_log", "run_id": "r1", "entry": {"message": "naïve \"quoted\" ✓"}}]
    await store.write([], [], [_daemon("first")])
    texts: list[str] = []
    seqs = await store.write([r1], [], events, encoded=texts)
    assert seqs == [2, 3, 4]
    assert [json.loads(text) for text in texts] == events == await store.events_since(1)
    assert [json.loads(text)["seq"] for text in texts] == seqs


async def test_encoded_texts_only_once_committed(store: Store) -> None:
    texts: list[str] = []
    with pytest.raises(StoreError):
        # The log entry names a run that does not exist: the transaction is refused.
        await store.write([], [{"run_id": "r999", "ts": "2024-01-01T00:00:00Z", "message": "x"}],
                          [_daemon("a")], encoded=texts)
    assert texts == []
    assert await store.events_since(0) == []
