"""What a new user meets in the first hour of the TUI (issue 13): the Run screen's
keys work at once, Esc goes back, finished output opens at its end, saved filters
survive a second TUI, and the small things that looked broken."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from apsis_tui.screens.dialogs import HelpScreen, NewRunDialog
from apsis_tui.screens.run import RunScreen
from apsis_tui.screens.runs import RunsScreen
from apsis_tui.state import TuiState
from apsis_tui.widgets.output_view import OutputPane, OutputView
from apsis_tui.widgets.run_table import RunTable, layout_columns
from tests.tui.test_app_fake import open_run, settle, shown_text, wait_until

LONG_OUTPUT = b"".join(b"line %d\n" % n for n in range(1, 201))


def long_output(app) -> None:  # noqa: ANN001
    async def output(run_id: str, output_id: str = "output", *, start: int = 0,
                     follow: bool = True) -> AsyncIterator[bytes]:
        yield LONG_OUTPUT[start:]

    app.client.output = output


async def test_run_screen_opens_with_the_output_focused_and_its_keys_shown(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await open_run(app, pilot, "r1")
        assert isinstance(app.focused, OutputView)
        shown = {binding.binding.action for binding in screen.active_bindings.values()
                 if binding.binding.show}
        assert {"toggle_follow", "request_search"} <= shown
        await pilot.press("slash")
        await settle(pilot)
        assert screen.query_one(OutputPane).search_open


async def test_escape_closes_the_search_then_goes_back(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await open_run(app, pilot, "r1")
        await pilot.press("escape")  # nothing of its own open: back
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        screen = await open_run(app, pilot, "r1")
        await pilot.press("slash")
        await settle(pilot)
        await pilot.press("escape")  # closes the search only
        await settle(pilot)
        assert app.screen is screen and not screen.query_one(OutputPane).search_open
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)


async def test_a_finished_runs_output_opens_at_its_end(fake_app) -> None:
    app = fake_app()
    long_output(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await open_run(app, pilot, "r1")
        view = screen.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count == 200)
        await settle(pilot)
        assert view.max_scroll_y > 0
        assert view.scroll_offset.y == view.max_scroll_y
        assert "line 200" in shown_text(view)
        status = shown_text(screen.query_one(".output-status"))
        assert "following" not in status and "finished" in status


async def test_a_run_without_output_says_so(fake_app) -> None:
    app = fake_app()

    async def output(run_id: str, output_id: str = "output", *, start: int = 0,
                     follow: bool = True) -> AsyncIterator[bytes]:
        return
        yield b""

    app.client.output = output
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await open_run(app, pilot, "r1")
        view = screen.query_one(OutputView)
        await wait_until(pilot, lambda: "no output" in shown_text(view))


async def test_help_names_the_output_search_in_words(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await open_run(app, pilot, "r1")
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        names = [name for name, _ in app.screen._sections()]
        assert not [n for n in names if n.isidentifier() and n[0].isupper() and n != n.title()]
        assert "OutputPane" not in names and "Output search" in names


async def test_d_opens_the_dependency(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await open_run(app, pilot, "r4")  # depends on load-prices date=2023-11-13
        app.client.store["r1"]["args"] = {"date": "2023-11-13", "country": "GB"}
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen)
                         and app.screen.run_id == "r1")


async def test_a_rerun_from_the_run_screen_opens_the_new_run(fake_app) -> None:
    app = fake_app()

    async def rerun(run_id: str) -> dict:
        new = {**app.client.store[run_id], "run_id": "r99", "state": "scheduled",
               "rerun_of": run_id}
        app.client.store["r99"] = new
        return new

    app.client.rerun = rerun
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await open_run(app, pilot, "r3")
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen)
                         and app.screen.run_id == "r99")
        await pilot.press("escape")  # back to the rerun run, which lists the new one
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == "r3"
        labels = [str(screen.query_one("#deps").get_option_at_index(i).prompt)
                  for i in range(screen.query_one("#deps").option_count)]
        assert any("rerun as r99" in label for label in labels)


async def test_timeline_enter_adds_the_job_to_the_filter(fake_app, state_file) -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"state:success", "enter")
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot, 6)
        assert app.current_mode == "runs"
        text = app.screen.query_one("#filter").value
        assert "state:success" in text and "job:" in text, text


async def test_new_run_typing_a_job_name_before_opening_the_list(fake_app) -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, NewRunDialog)
        await pilot.press(*"heart", "enter")
        await settle(pilot, 5)
        from textual.widgets import Select

        assert app.screen.query_one("#job", Select).value == "ops/heartbeat"


def test_args_column_takes_what_the_args_need_at_200_columns() -> None:
    columns = {c.key: c for c in layout_columns(200, id_width=4, job_width=20, arg_widths=None,
                                                args_width=24)}
    assert columns["args"].width <= 30
    assert columns["job"].width >= 20


async def test_ansi_colours_are_the_terminals_own(fake_app) -> None:
    """Red, magenta and blue in a program's output reach the terminal as ANSI red,
    magenta and blue (the terminal's palette), not as the theme's one pink and purple."""
    from rich.segment import Segment
    from rich.style import Style

    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        segments = [Segment("x", Style(color=c)) for c in ("red", "magenta", "blue")]
        for line_filter in app.get_line_filters():
            segments = line_filter.apply(segments, app.screen.styles.background)
        assert [s.style.color.name for s in segments] == ["red", "magenta", "blue"]


def test_two_tuis_keep_each_others_filters(tmp_path: Path) -> None:
    path = tmp_path / "tui.json"
    first, second = TuiState(path), TuiState(path)
    first.set_filter("http://a:5000", "job:x")
    second.set_filter("http://b:5000", "state:failure")
    first.set_filter("http://a:5000", "job:y")
    saved = json.loads(path.read_text())
    assert saved["filters"] == {"http://a:5000": "job:y", "http://b:5000": "state:failure"}
    assert [p.name for p in tmp_path.iterdir()] == ["tui.json"]  # no temp file left
    assert TuiState(path).filter_for("http://b:5000") == "state:failure"


async def test_runs_screen_opens_at_now_with_hundreds_of_future_runs(fake_app) -> None:
    from tests.tui.factory import make_runs

    app = fake_app(page_size=100)
    app.client.store = {run["run_id"]: {**run, "outputs": []}
                        for run in make_runs(600, future=330)}
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model.loaded and len(app.model.runs) == 600)
        await settle(pilot, 5)
        table = app.screen.query_one(RunTable)
        assert abs(table.cursor_row - table.now_row) <= 1, (table.cursor_row, table.now_row)
        lines = shown_text(table)
        assert "now" in lines
