"""The App on a fake client: screens, keys, dialogs and the event stream, fast."""

from __future__ import annotations

import gc

import pytest

from apsis_tui.screens.dialogs import ConfirmDialog, HelpScreen
from apsis_tui.screens.run import RunScreen
from apsis_tui.widgets.output_view import OutputView
from apsis_tui.widgets.run_table import RunTable
from tests.tui.factory import BASE, iso


async def settle(pilot, times: int = 3) -> None:
    for _ in range(times):
        await pilot.pause()


async def wait_until(pilot, predicate, timeout: float = 5.0) -> None:
    """Pause until ``predicate()`` holds: workers finish when they finish."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.02)


async def open_run(app, pilot, run_id: str) -> RunScreen:
    """Moves the Runs table's cursor to `run_id` and opens it."""
    app.screen.query_one(RunTable).move_to_run(run_id)
    await pilot.press("enter")
    await settle(pilot, 5)
    assert isinstance(app.screen, RunScreen)
    return app.screen


def shown_text(widget) -> str:
    """What a widget draws, its lines joined."""
    return "".join(widget.render_line(y).text for y in range(widget.size.height))


async def test_runs_table_fills_and_focus(fake_app) -> None:
    gc.unfreeze()
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # The loaded runs are out of the full GC passes that stalled keys (bench: p99).
        assert gc.get_freeze_count() > 0
        table = app.screen.query_one(RunTable)
        assert table.row_count == 12
        assert app.focused is table
        assert app.model.version == "0.1.0"
        assert app.model.connection == "live"


@pytest.mark.parametrize(("max_runs", "loaded", "pages"), [(100, 12, 3), (7, 10, 2)])
async def test_runs_load_page_by_page_up_to_max_runs(fake_app, max_runs, loaded, pages) -> None:
    app = fake_app(page_size=5, max_runs=max_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: not any(
            w.group == "runs" and not w.is_finished for w in app.workers))
        await settle(pilot)
        assert len(app.model.runs) == loaded
        assert app.client.pages_served == pages  # none asked for beyond max_runs
        table = app.screen.query_one(RunTable)
        table.flush()
        assert table.row_count == loaded


async def test_an_unreachable_daemon_is_said_in_the_empty_table(fake_app) -> None:
    from apsis.client import ApsisUnavailable
    from tests.tui.fake_client import FakeClient

    class Down(FakeClient):
        async def runs(self, **_: object) -> dict:
            raise ApsisUnavailable("cannot reach Apsis at http://fake:5000: refused")

    app = fake_app(client=Down())
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one(RunTable)
        await wait_until(pilot, lambda: "cannot reach" in table.empty_message)
        assert table.render_line(1).text.strip().startswith(
            "cannot reach Apsis at http://fake:5000: refused")


async def test_runs_changed_by_events_are_frozen_out_of_the_gc_too(fake_app, monkeypatch) -> None:
    import apsis_tui.model

    monkeypatch.setattr(apsis_tui.model, "REFREEZE_AFTER", 3)
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        gc.unfreeze()
        for n in range(3):
            run = dict(app.client.store["r10"], state=("running", "failure", "running")[n])
            app.client.push({"type": "run_transition", "run": run, "from": "?", "to": run["state"]})
        await wait_until(pilot, lambda: gc.get_freeze_count() > 0)


async def test_event_updates_row_and_title(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        run = dict(app.client.store["r10"])
        run.update(state="failure", times={**run["times"], "running": iso(BASE - 30),
                                           "failure": iso(BASE - 5)})
        app.client.push({"type": "run_transition", "run": run, "from": "running",
                         "to": "failure"})
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        table.flush()
        assert app.model.runs["r10"]["state"] == "failure"
        assert table.store.get("r10")["state"] == "failure"
        running, failed = app.model.counts()
        assert (running, failed) == (2, 1)
        assert "1 failed" in app.title_text()


async def test_filter_is_remembered(fake_app, state_file) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"state:running")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one(RunTable).row_count == 2
    assert "state:running" in state_file.read_text()
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.query_one(RunTable).row_count == 2


async def test_add_job_term_from_row(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        table.move_to_run("r3")
        await pilot.press("j")
        await settle(pilot)
        assert {run["job_id"] for run in table.store} == {"ops/heartbeat"}
        assert "job:ops/heartbeat" in app.screen.query_one("#filter").value
        # One job in view: the table drops its job column, the count names the job.
        assert "job" not in [c.key for c in table.columns]
        count = shown_text(app.screen.query_one("#run-count"))
        assert count.strip().startswith("ops/heartbeat · 4 of 12")


async def test_open_run_shows_output(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        view = (await open_run(app, pilot, "r1")).query_one(OutputView)
        view.flush()
        assert view.line_count == 5
        assert view.line_text(1).spans  # colours kept
        await pilot.press("J")
        assert app.screen.query_one("#run-tabs").active == "json"
        await pilot.press("escape")
        assert not isinstance(app.screen, RunScreen)


async def test_dependencies_list_only_when_the_run_has_some(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for run_id, expected in (("r1", False), ("r4", True)):
            screen = await open_run(app, pilot, run_id)
            deps = screen.query_one("#deps")
            assert deps.display is expected
            assert screen.query_one("#deps-title").display is expected
            if expected:
                assert "market/load-prices" in str(deps.get_option_at_index(0).prompt)
            await pilot.press("escape")
            await settle(pilot)


async def test_run_summary_says_the_exit_code_once(fake_app) -> None:
    app = fake_app()
    app.client.store["r3"]["message"] = "exit code 1"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        summary = shown_text((await open_run(app, pilot, "r3")).query_one("#run-summary"))
        assert "failure" in summary and summary.count("exit") == 1, summary


async def test_skip_through_confirmation(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one(RunTable).move_to_run("r12")
        await pilot.press("k")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.model.runs["r12"]["state"] == "skipped")
        assert app.client.calls == [("skip", "r12")]
        assert app.model.runs["r12"]["state"] == "skipped"


async def test_help_lists_keys(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        sections = dict(app.screen._sections())
        assert {"Runs screen", "Run table", "Everywhere"} <= set(sections)
        assert not any(name.endswith(("App", "Table", "View")) for name in sections)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_other_screens_open(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert app.current_mode == "jobs"
        summary = shown_text(app.screen.query_one("#job-summary"))
        assert "Move to a job" in summary  # not an empty pane
        assert not app.screen.query_one("#job-sparkline").display
        await pilot.press("3")
        await settle(pilot)
        assert app.current_mode == "timeline"
        assert app.screen.query_one("#timeline").jobs
        await pilot.press("1")
        assert app.current_mode == "runs"


async def test_job_screen_shows_the_file_as_written_else_the_parsed_job(fake_app) -> None:
    from apsis_tui.screens.job import JobScreen
    from tests.tui.fake_client import SOURCES

    def shown(screen: JobScreen) -> str:
        return str(screen.query_one("#job-yaml").content.code)  # a rich Syntax

    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await app.push_screen(JobScreen("market/compute-returns"))
        await wait_until(pilot, lambda: isinstance(app.screen, JobScreen)
                         and app.screen.source is not None)
        assert SOURCES["market/compute-returns"] in shown(app.screen)
        assert "# reads the prices table" in shown(app.screen)
        await pilot.press("escape")
        await app.push_screen(JobScreen("ops/heartbeat"))  # no file: the parsed definition
        await wait_until(pilot, lambda: isinstance(app.screen, JobScreen)
                         and not any(w.group == "job-load" and not w.is_finished
                                     for w in app.workers))
        assert app.screen.source is None
        assert "type: no-op" in shown(app.screen)


async def test_indicator_is_never_live_while_the_event_socket_is_down(fake_app) -> None:
    import asyncio

    from tests.tui.fake_client import FakeClient

    class SocketDown(FakeClient):
        """/alive answers, but the event socket is down until the test says so."""

        report = None

        async def events(self, since=None, *, on_state=None, **_):  # noqa: ANN001, ANN202
            self.report = on_state
            on_state("connecting")
            on_state("disconnected")
            await asyncio.Event().wait()
            yield {}

    client = SocketDown()
    app = fake_app(client=client)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.model.version is not None and client.report is not None)
        await settle(pilot)
        assert app.model.connection == "down"  # though /alive answered
        client.report("live")
        assert app.model.connection == "live"
        client.report("disconnected")
        assert app.model.connection == "down" and "disconnected" in app.title_text()
