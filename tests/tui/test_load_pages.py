"""The Runs table loads a real daemon's runs many pages to a request (GET /runs?pages=N),
every run once, and goes on past the first request's pages; each page is taken as it
arrives, however many reads it spans. A daemon that refuses `pages` is read a page a
request."""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import httpx
import pytest
from textual.widgets import Static

from apsis.api.routes import MAX_PAGES
from apsis.client import Client
from apsis_tui.app import ApsisApp
from apsis_tui.state import TuiState
from apsis_tui.widgets.run_table import RunTable
from tests.integration.helpers import create, http

JOBS = {"noop": "program: {type: no-op}\n",
        "wide": "params: [blob]\nprogram: {type: no-op}\n"}

pytestmark = pytest.mark.timeout(60)


async def _loaded_table(app: ApsisApp, pilot: Any, stuck: str) -> RunTable:
    """The Runs table once the load's workers are done (`stuck`: why, if they never are)."""
    deadline = time.monotonic() + 30
    while any(w.group == "runs" and not w.is_finished for w in app.workers):
        assert time.monotonic() < deadline, stuck
        await pilot.pause(0.05)
    table = app.screen_stack[0].query_one(RunTable)
    table.flush()
    return table


async def test_every_run_loads_through_multi_page_requests(daemon, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("apsis_tui.app.PAGES_PER_REQUEST", 3)
    with http(daemon) as api:
        created = {r["run_id"] for r in create(api, "noop", count=47)}
    app = ApsisApp(daemon.url, state=TuiState(tmp_path / "tui.json"), ansi=False, page_size=4)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await _loaded_table(app, pilot, "the load did not finish")
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


def finished_runs(daemon, count: int) -> int:  # noqa: ANN001
    """Creates ``count`` no-op runs and waits for them to finish; returns how many runs
    the daemon holds."""
    with http(daemon) as api:
        create(api, "noop", count=count)
        wait_finished(api)
        return len(api.get("/runs", params={"limit": 10_000}).json()["runs"])


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
    total = finished_runs(daemon, 700)
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


async def test_a_daemon_refusing_pages_is_read_a_page_a_request(daemon, tmp_path,  # noqa: ANN001
                                                                monkeypatch) -> None:
    # A daemon older than GET /runs?pages=N refuses the parameter with a 400 naming it;
    # this one refuses more pages than it serves in one answer, the same way. The TUI
    # reads every run by plain pages instead of asking again and again.
    monkeypatch.setattr("apsis_tui.app.PAGES_PER_REQUEST", MAX_PAGES + 1)
    with http(daemon) as api:
        created = {r["run_id"] for r in create(api, "noop", count=30)}
        refusal = api.get("/runs", params={"limit": 4, "pages": MAX_PAGES + 1})
    assert refusal.status_code == 400 and "pages" in refusal.json()["error"]["message"]
    app = ApsisApp(daemon.url, state=TuiState(tmp_path / "tui.json"), ansi=False, page_size=4)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await _loaded_table(app, pilot, "the load went on asking for pages")
        assert created <= {table.store.row_id(i) for i in range(table.row_count)}


async def test_a_client_refused_pages_asks_a_page_a_request_from_then_on(daemon) -> None:  # noqa: ANN001
    with http(daemon) as api:
        create(api, "noop", count=10)
        wait_finished(api)  # both reads read the same runs
    async with Client(daemon.url) as client:
        by_cursor, cursor = [], None
        while True:
            page = await client.runs(limit=100, cursor=cursor, summary=True)
            by_cursor.append(page["runs"])
            if (cursor := page["cursor"]) is None:
                break
        asked = []
        request = client._request

        async def recording(method: str, path: str, **kwargs: object) -> object:
            asked.append(dict(kwargs["params"]))  # type: ignore[call-overload]
            return await request(method, path, **kwargs)  # type: ignore[arg-type]

        client._request = recording  # type: ignore[method-assign]
        for _ in range(2):
            lines = [line async for line in client.run_page_lines(MAX_PAGES + 1, limit=100,
                                                                   summary=True)]
            assert [json.loads(line)["runs"] for line in lines] == by_cursor
    # Refused once, then plain pages only, a request each.
    assert ["pages" in params for params in asked] == [True] + [False] * 2 * len(by_cursor)


async def test_a_load_goes_on_while_the_user_types(daemon, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    # Keys come first during a load (a page at most every 50 ms while the user types),
    # but the load does not wait for the user to stop.
    monkeypatch.setattr("apsis_tui.app.PAGES_PER_REQUEST", 3)
    total = finished_runs(daemon, 300)
    app = ApsisApp(daemon.url, state=TuiState(tmp_path / "tui.json"), ansi=False,
                   page_size=10)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen_stack[0].query_one(RunTable)
        deadline = time.monotonic() + 30
        while not table.row_count:
            assert time.monotonic() < deadline
            await pilot.pause(0.01)
        table.focus()
        keys = 0
        while table.row_count < total or table.pending_count:
            assert time.monotonic() < deadline, (table.row_count, total)
            await pilot.press("up" if keys % 40 < 20 else "down")
            keys += 1
        assert keys > 5  # the user typed all along
        assert len({table.store.row_id(i) for i in range(table.row_count)}) == total
