"""The Runs table loads a real daemon's runs many pages to a request (GET /runs?pages=N),
every run once, and goes on past the first request's pages."""

from __future__ import annotations

import time

import pytest

from apsis_tui.app import ApsisApp
from apsis_tui.state import TuiState
from apsis_tui.widgets.run_table import RunTable
from tests.integration.helpers import create, http

JOBS = {"noop": "program: {type: no-op}\n"}

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
