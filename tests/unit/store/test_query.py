"""query_runs: every filter against a plain-Python reference, and pagination."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from apsis.store import InvalidCursorError, Store
from apsis.store.keys import time_key

from .conftest import make_run, transition_event

pytestmark = pytest.mark.timeout(60)

STATES = ["new", "scheduled", "running", "success", "failure", "error", "skipped"]
JOBS = ["a/one", "a/two", "b/three"]
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _runs(n: int = 300) -> list[dict[str, Any]]:
    rng = random.Random(7)
    runs = []
    for i in range(1, n + 1):
        # Many runs share a time (ties are broken by run number); some are written in
        # another zone, which must sort by the instant, not the text.
        when = BASE + dt.timedelta(hours=rng.randrange(0, 60))
        zone = dt.timezone(dt.timedelta(hours=rng.choice([0, 2, -5])))
        runs.append(
            make_run(
                f"r{i}",
                job_id=rng.choice(JOBS),
                state=rng.choice(STATES),
                schedule=when.astimezone(zone).isoformat(),
                args={"country": rng.choice(["US", "GB", "DE"]), "date": f"d{i % 10}"},
                labels=rng.sample(["daily", "prices", "slow"], k=rng.randrange(0, 3)),
            )
        )
    return runs


def _newest_first(runs: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(
        runs, key=lambda r: (time_key(r["times"]["schedule"]), int(r["run_id"][1:])), reverse=True
    )
    return [r["run_id"] for r in ordered]


async def _all_pages(store: Store, page_size: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.query_runs(limit=page_size, cursor=cursor, **filters)
        assert len(page.runs) <= page_size
        seen.extend(r["run_id"] for r in page.runs)
        if page.cursor is None:
            return seen
        cursor = page.cursor


@pytest.fixture
async def filled(store: Store) -> tuple[Store, list[dict[str, Any]]]:
    runs = _runs()
    await store.write(runs)
    return store, runs


def _in_window(run: dict[str, Any], since: str | None, until: str | None) -> bool:
    key = time_key(run["times"]["schedule"])
    return (since is None or key >= time_key(since)) and (until is None or key < time_key(until))


CASES: list[tuple[dict[str, Any], Any]] = [
    ({}, lambda r: True),
    ({"job_id": "a/two"}, lambda r: r["job_id"] == "a/two"),
    ({"job_id": "nope"}, lambda r: False),
    ({"states": ["running", "new"]}, lambda r: r["state"] in ("running", "new")),
    ({"states": ["failure"]}, lambda r: r["state"] == "failure"),
    ({"states": []}, lambda r: False),
    (
        {"since": "2024-01-02T00:00:00+00:00", "until": "2024-01-02T12:00:00+02:00"},
        lambda r: _in_window(r, "2024-01-02T00:00:00+00:00", "2024-01-02T12:00:00+02:00"),
    ),
    ({"labels": ["daily"]}, lambda r: "daily" in r["labels"]),
    ({"labels": "daily"}, lambda r: "daily" in r["labels"]),
    ({"labels": ["daily", "slow"]}, lambda r: {"daily", "slow"} <= set(r["labels"])),
    ({"args": {"country": "US"}}, lambda r: r["args"]["country"] == "US"),
    (
        {"args": {"country": "GB", "date": "d3"}},
        lambda r: r["args"]["country"] == "GB" and r["args"]["date"] == "d3",
    ),
    ({"args": {"country": "FR"}}, lambda r: False),
    (
        {
            "job_id": "a/one",
            "states": ["success", "failure"],
            "args": {"country": "DE"},
            "labels": ["prices"],
            "since": "2024-01-01T12:00:00Z",
        },
        lambda r: (
            r["job_id"] == "a/one"
            and r["state"] in ("success", "failure")
            and r["args"]["country"] == "DE"
            and "prices" in r["labels"]
            and _in_window(r, "2024-01-01T12:00:00Z", None)
        ),
    ),
    ({"job_id": ["a/one", "b/three"]}, lambda r: r["job_id"] in ("a/one", "b/three")),
    ({"job_id": ["a/two"]}, lambda r: r["job_id"] == "a/two"),
    ({"job_id": ["a/one", "nope"]}, lambda r: r["job_id"] == "a/one"),
    ({"job_id": []}, lambda r: False),
    (
        {"job_id": ["a/one", "a/two"], "args": {"country": "US"}, "labels": ["daily"],
         "until": "2024-01-02T12:00:00Z"},
        lambda r: (
            r["job_id"] in ("a/one", "a/two")
            and r["args"]["country"] == "US"
            and "daily" in r["labels"]
            and _in_window(r, None, "2024-01-02T12:00:00Z")
        ),
    ),
    ({"run_ids": ["r5", "r10", "r77", "r9999"]}, lambda r: r["run_id"] in ("r5", "r10", "r77")),
    (
        {"run_ids": ["r5", "r10"], "job_id": "a/one"},
        lambda r: r["run_id"] in ("r5", "r10") and r["job_id"] == "a/one",
    ),
]


@pytest.mark.parametrize(("filters", "matches"), CASES, ids=[str(c[0]) for c in CASES])
async def test_filters_match_reference(filled, filters, matches) -> None:
    store, runs = filled
    expected = _newest_first([r for r in runs if matches(r)])
    page = await store.query_runs(limit=1000, **filters)
    assert [r["run_id"] for r in page.runs] == expected
    assert page.cursor is None


@pytest.mark.parametrize("page_size", [1, 7, 100, 299, 300, 301])
async def test_pages_cover_every_run_exactly_once(filled, page_size: int) -> None:
    store, runs = filled
    seen = await _all_pages(store, page_size)
    assert seen == _newest_first(runs)


async def test_pages_with_filters(filled) -> None:
    store, runs = filled
    seen = await _all_pages(store, 5, job_id="b/three", args={"country": "US"})
    expected = [r for r in runs if r["job_id"] == "b/three" and r["args"]["country"] == "US"]
    assert seen == _newest_first(expected)


@pytest.mark.parametrize("apart", [True, False], ids=["job-by-job", "one-scan"])
async def test_pages_of_a_folder_of_jobs(filled, monkeypatch, apart: bool) -> None:
    """`apsis runs a/`: one page of several jobs, read job by job or (past JOBS_APART jobs)
    in one scan, pages through them in the same order either way."""
    from apsis.store import query

    store, runs = filled
    monkeypatch.setattr(query, "JOBS_APART", 200 if apart else 1)
    seen = await _all_pages(store, 7, job_id=["a/one", "a/two"], states=["success", "failure"])
    expected = [r for r in runs if r["job_id"].startswith("a/") and r["state"] in ("success", "failure")]
    assert seen == _newest_first(expected)


async def test_pages_are_stable_while_runs_are_added(filled) -> None:
    store, runs = filled
    first = await store.query_runs(limit=50)
    # A newer run written between pages shows up neither twice nor in the middle.
    await store.write([make_run("r1000", schedule="2030-01-01T00:00:00+00:00")])
    rest = await _all_pages_from(store, first.cursor)
    assert [r["run_id"] for r in first.runs] + rest == _newest_first(runs)


async def _all_pages_from(store: Store, cursor: str | None) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = await store.query_runs(limit=37, cursor=cursor)
        seen.extend(r["run_id"] for r in page.runs)
        cursor = page.cursor
    return seen


async def test_selective_and_common_args_give_the_same_order(store: Store) -> None:
    # More runs than the selectivity threshold, so both query plans are exercised.
    from apsis.store import query as query_module

    runs = [
        make_run(
            f"r{i}",
            schedule=(BASE + dt.timedelta(minutes=i % 997)).isoformat(),
            args={"kind": "common", "n": str(i % 3)},
        )
        for i in range(1, query_module.SELECTIVE + 200)
    ]
    await store.write(runs)
    common = await store.query_runs(args={"kind": "common"}, limit=50)
    assert [r["run_id"] for r in common.runs] == _newest_first(runs)[:50]
    rare = await store.query_runs(args={"kind": "common", "n": "1"}, limit=5000)
    expected = _newest_first([r for r in runs if r["args"]["n"] == "1"])
    assert [r["run_id"] for r in rare.runs] == expected[:5000]


async def test_seq_is_consistent_with_the_page(store: Store) -> None:
    run = make_run("r1")
    await store.write([run], [], [transition_event(run, "new")])
    page = await store.query_runs()
    assert page.seq == 1 and len(page.runs) == 1
    await store.write([make_run("r1", state="scheduled")], [], [transition_event(run, "scheduled")])
    page = await store.query_runs()
    assert page.seq == 2 and page.runs[0]["state"] == "scheduled"


async def test_run_without_schedule_sorts_by_creation(store: Store) -> None:
    run = make_run("r1", schedule=None)
    run["times"] = {"new": "2024-05-01T00:00:00Z"}
    await store.write([run, make_run("r2", schedule="2024-04-01T00:00:00Z")])
    page = await store.query_runs()
    assert [r["run_id"] for r in page.runs] == ["r1", "r2"]


async def test_bad_cursor_is_an_error(store: Store) -> None:
    for bad in ["garbage", "", "!!!", "eHl6"]:
        with pytest.raises(InvalidCursorError):
            await store.query_runs(cursor=bad)
    with pytest.raises(ValueError):
        await store.query_runs(limit=0)


@pytest.mark.sqlite_only  # PostgreSQL's planner chooses its plans itself
async def test_job_query_walks_the_job_index_without_sorting(store: Store) -> None:
    """What keeps `GET /runs?job_id=X` at a few ms on a million runs."""
    import sqlite3

    from apsis.store.query import RunQuery

    query = RunQuery(100)
    query.add_filters(job_id="a/one", states=["success"], since=None, until=None, cursor=None)
    query.finish(None, [])
    conn = sqlite3.connect(store.path)
    try:
        plan = " / ".join(
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query.sql(), query.params)
        )
    finally:
        conn.close()
    assert "runs_job_time" in plan and "TEMP B-TREE" not in plan, plan
