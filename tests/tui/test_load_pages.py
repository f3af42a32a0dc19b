"""The Runs table loads a real daemon's runs many pages to a request (GET /runs?pages=N),
every run once, and goes on past the first request's pages; each page is taken as it
arrives, however many reads it spans."""

from __future__ import annotations

import gc
import json
import time

import httpx
import pytest
from textual.widgets import Static

from apsis.client import Client
from apsis_tui.app import ApsisApp
from apsis_tui.state import TuiState
from apsis_tui.widgets.run_table import RunTable
from tests.integration.helpers import create, http

JOBS = {"noop": "program: {type: no-op}\n",
        "wide": "params: [blob]\nprogram: {type: no-op}\n"}

pytestmark = pytest.mark.timeout(60)


async def test_every_run_loads_through_multi_page_requests(daemon, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("apsis_tui.app.PAGES_PER_REQUEST", 3)
    with http(daemon) as api:
        created = {r["run_id"] for r in create(api, "noop", count=47)}
    app = ApsisApp(daemon.url, state=TuiState(tmp_path / "tui.json"), ansi=False, page_size=4)
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 30
        while any(w.group == "runs" and not w.is_finished for w in app.workers):
            assert time.monotonic() < deadline, "the load did not finish"
            await pilot.pause(0.05)
        table = app.screen_stack[0].query_one(RunTable)
        table.flush()
        # 1 page, then requests of 3 pages of 4: 47 runs need 1 + 4 requests; all arrive.
        assert created <= set(app.model.runs)
        assert created <= {table.store.row_id(i) for i in range(table.row_count)}


def wait_finished(api: httpx.Client) -> None:
    """Until every run of the daemon is finished (no event will change one)."""
    unfinished = {"state": ["new", "scheduled", "waiting", "starting", "running"]}
    deadline = time.monotonic() + 30
    while api.get("/runs", params=unfinished).json()["runs"]:
        assert time.monotonic() < deadline, "runs still unfinished"
        time.sleep(0.05)


async def test_pages_longer_than_a_read_arrive_whole(daemon) -> None:  # noqa: ANN001
    # Pages of ~200 kB: each spans several reads of the socket (64 KiB), and is given
    # whole, as soon as it is in, the same pages as paging by cursor.
    with http(daemon) as api:
        for n in range(30):
            create(api, "wide", args={"blob": f"{n:02d}" + "x" * 20_000})
        wait_finished(api)  # both reads read the same runs
    async with Client(daemon.url) as client:
        by_cursor, cursor = [], None
        for _ in range(3):
            page = await client.runs(limit=10, cursor=cursor, summary=True)
            by_cursor.append(page)
            cursor = page["cursor"]
        lines = [line async for line in client.run_page_lines(3, limit=10, summary=True)]
    assert min(map(len, lines)) > 3 * 65_536
    assert [json.loads(line)["runs"] for line in lines] == [p["runs"] for p in by_cursor]


async def test_a_load_of_big_pages_shows_every_run_and_the_count(daemon, tmp_path,  # noqa: ANN001
                                                                 monkeypatch) -> None:
    # Pages of more than 100 runs are shown a few at a time during a load: the last of
    # them too, with the count, with no event coming to flush the table.
    monkeypatch.setattr("apsis_tui.app.PAGES_PER_REQUEST", 3)
    with http(daemon) as api:
        create(api, "noop", count=700)
        wait_finished(api)
        total = len(api.get("/runs", params={"limit": 10_000}).json()["runs"])
    app = ApsisApp(daemon.url, state=TuiState(tmp_path / "tui.json"), ansi=False,
                   page_size=120)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen_stack[0].query_one(RunTable)
        count = app.screen_stack[0].query_one("#run-count", Static)
        deadline = time.monotonic() + 30
        while table.row_count < total or str(count.render()) != f"{total:,} runs":
            assert time.monotonic() < deadline, (table.row_count, str(count.render()))
            await pilot.pause(0.05)
        assert len(set(table.store.row_id(i) for i in range(table.row_count))) == total
        assert gc.isenabled()  # paused during the load only
