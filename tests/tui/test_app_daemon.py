"""The TUI against a real daemon in a subprocess, driven with Pilot as a person would:
the table fills, new runs appear live, filtering, a run's output streams in with its
colours, an operation through the confirmation dialog, and reconnecting after the
daemon restarts."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from apsis.client import Client
from apsis_tui.app import ApsisApp
from apsis_tui.screens.dialogs import ConfirmDialog
from apsis_tui.screens.run import RunScreen
from apsis_tui.state import TuiState
from apsis_tui.widgets.output_view import OutputView
from apsis_tui.widgets.run_table import RunTable

JOBS = {
    "hello": "program: {type: no-op}\n",
    "colors": (
        "program:\n  type: shell\n  command: >-\n"
        "    for i in 1 2 3 4; do printf '\\033[32mgreen %s\\033[0m\\n' $i; sleep 0.3; done\n"
    ),
    "data/load": "params: [date]\nprogram: {type: no-op}\n",
    "split": (
        "program:\n  type: shell\n  outputs: split\n  command: >-\n"
        "    echo out 1; echo err 1 >&2; sleep 0.5; echo out 2; echo err 2 >&2\n"
    ),
}

pytestmark = pytest.mark.timeout(60)


def make_app(url: str, tmp_path) -> ApsisApp:  # noqa: ANN001
    return ApsisApp(url, state=TuiState(tmp_path / "tui.json"), health_interval=0.3, ansi=False)


async def wait_until(pilot, predicate: Callable[[], bool], timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)


def table_of(app: ApsisApp) -> RunTable:
    return app.screen_stack[0].query_one(RunTable)


async def test_table_fills_goes_live_and_filters(daemon, tmp_path) -> None:  # noqa: ANN001
    async with Client(daemon.url) as client:
        first = await client.create_runs("data/load", {"date": "2024-01-01"})
        app = make_app(daemon.url, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: first[0]["run_id"] in table_of(app).store)
            # The first page can be drawn before the event socket is open: live soon after.
            await wait_until(pilot, lambda: app.model.connection == "live", timeout=5)
            assert app.model.version
            # A run created now appears without any reload.
            new = await client.create_runs("hello")
            await wait_until(pilot, lambda: (table_of(app).store.get(new[0]["run_id"]) or {})
                             .get("state") == "success")
            # Filtering by job, through the filter box.
            await pilot.press("slash", *"job:data", "enter")
            await wait_until(pilot, lambda: table_of(app).row_count >= 1
                             and all(r["job_id"] == "data/load" for r in table_of(app).store))
            assert new[0]["run_id"] not in [r["run_id"] for r in table_of(app).store]
            await pilot.press("ctrl+u")
            await wait_until(pilot, lambda: new[0]["run_id"] in
                             [r["run_id"] for r in table_of(app).store])


async def test_run_output_streams_with_colours(daemon, tmp_path) -> None:  # noqa: ANN001
    async with Client(daemon.url) as client:
        app = make_app(daemon.url, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: app.model.loaded)
            run = (await client.create_runs("colors"))[0]
            await wait_until(pilot, lambda: run["run_id"] in table_of(app).store)
            table_of(app).move_to_run(run["run_id"])
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
            view = app.screen.query_one(OutputView)
            # Lines arrive while the run runs, and the run's state follows live.
            await wait_until(pilot, lambda: (view.flush(), view.line_count)[1] >= 1)
            assert app.screen.run_data.get("state") in ("running", "success")
            await wait_until(pilot, lambda: (view.flush(), view.line_count)[1] == 4)
            assert view.line_text(0).plain == "green 1"
            assert any("green" in str(span.style) or span.style for span in
                       view.line_text(0).spans)
            await wait_until(pilot, lambda: app.screen.run_data.get("state") == "success")


async def test_run_with_split_outputs_switches_between_them(daemon, tmp_path) -> None:  # noqa: ANN001
    async with Client(daemon.url) as client:
        app = make_app(daemon.url, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: app.model.loaded)
            run = (await client.create_runs("split"))[0]
            await wait_until(pilot, lambda: run["run_id"] in table_of(app).store)
            table_of(app).move_to_run(run["run_id"])
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            view = screen.query_one(OutputView)

            def lines() -> list[str]:
                view.flush()
                return [view.line_text(i).plain for i in range(view.line_count)]

            await wait_until(pilot, lambda: screen.output_ids == ["stdout", "stderr"])
            assert screen.output_id == "stdout"
            await wait_until(pilot, lambda: lines() == ["out 1", "out 2"])
            tabs = screen.query_one("#run-tabs")
            assert "stdout" in str(tabs.get_tab("output").label)
            await pilot.press("O")
            assert screen.output_id == "stderr"
            await wait_until(pilot, lambda: lines() == ["err 1", "err 2"])
            assert "stderr" in str(tabs.get_tab("output").label)
            await pilot.press("O")  # and around again
            await wait_until(pilot, lambda: lines() == ["out 1", "out 2"])
            await wait_until(pilot, lambda: screen.run_data.get("state") == "success")


async def test_skip_through_confirmation(daemon, tmp_path) -> None:  # noqa: ANN001
    async with Client(daemon.url) as client:
        run = (await client.create_runs("hello", schedule="+1h"))[0]
        app = make_app(daemon.url, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: run["run_id"] in table_of(app).store)
            assert table_of(app).move_to_run(run["run_id"])
            table_of(app).focus()
            await pilot.press("k")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_until(pilot, lambda: app.model.runs[run["run_id"]]["state"] == "skipped")
            assert (await client.run(run["run_id"]))["state"] == "skipped"


async def test_reconnects_after_restart(apsis_daemon, tmp_path) -> None:  # noqa: ANN001
    daemon = apsis_daemon(JOBS)
    app = make_app(daemon.url, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model.loaded and app.model.connection == "live")
        daemon.kill()
        await wait_until(pilot, lambda: app.model.connection == "down")
        daemon.start()
        await wait_until(pilot, lambda: app.model.connection == "live", timeout=15)
        async with Client(daemon.url) as client:
            new = (await client.create_runs("hello"))[0]
        # The stream resumed from the last seq: the new run arrives live, finished.
        await wait_until(pilot, lambda: (app.model.runs.get(new["run_id"]) or {}).get("state")
                         == "success", timeout=15)
        await wait_until(pilot, lambda: new["run_id"] in table_of(app).store)


async def test_job_screen_shows_the_job_file(daemon, tmp_path) -> None:  # noqa: ANN001
    from apsis_tui.screens.job import JobScreen

    app = make_app(daemon.url, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model.loaded)
        await app.push_screen(JobScreen("colors"))
        await wait_until(pilot, lambda: app.screen.source == JOBS["colors"])
        assert JOBS["colors"] in app.screen.query_one("#job-yaml").content.code
