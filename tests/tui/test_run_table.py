"""RunTable driven by Pilot in a tiny app: 100 000 runs, cursor, filter, now line."""

from __future__ import annotations

import re
from functools import cache

from textual.app import App, ComposeResult
from textual.strip import Strip

from apsis.present import format_elapsed, state_symbol
from apsis_tui.widgets.run_table import (
    RunTable,
    fit,
    layout_columns,
)
from tests.tui.factory import BASE, make_run, make_runs


@cache
def runs_100k() -> list[dict]:
    """Built once for the module: the store never mutates the run dicts."""
    return make_runs(100_000)


class Clock:
    """A settable time source, so rows and the now line are deterministic."""

    def __init__(self, now: float = BASE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TableApp(App[None]):
    def __init__(self, runs: list[dict], clock: Clock | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.clock = clock or Clock()
        self.selected: list[str] = []
        self.highlighted: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield RunTable(clock=self.clock)

    def on_mount(self) -> None:
        self.query_one(RunTable).load(self.runs)

    def on_run_table_run_selected(self, event: RunTable.RunSelected) -> None:
        self.selected.append(event.run_id)

    def on_run_table_run_highlighted(self, event: RunTable.RunHighlighted) -> None:
        self.highlighted.append(event.run_id)


def screen(table: RunTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


def cursor_screen_line(table: RunTable) -> int:
    return table._row_to_line(table.cursor_row) - table.scroll_offset.y


async def test_100k_runs_first_paint_around_now() -> None:
    app = TableApp(runs_100k())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        assert table.row_count == 100_000
        assert table.now_row == 99_990  # 10 runs are in the future
        assert table.cursor_run_id == "r99990"  # the last run before now
        lines = screen(table)
        assert lines[0].split()[:2] == ["run", "job"]  # header (narrow: no state title)
        now_lines = [i for i, line in enumerate(lines) if line.startswith("── now")]
        assert len(now_lines) == 1
        visible = table.visible_run_ids()
        assert len(visible) == 22  # 24 lines - header - now line
        assert visible[-1] == "r100000"
        # Rows above the now line are past, rows below it scheduled.
        above, below = lines[1 : now_lines[0]], lines[now_lines[0] + 1 :]
        assert all("○" not in line for line in above)
        assert all(line.split()[1] == "○" for line in below if line.strip())
        assert all(len(line) == table.scrollable_content_region.width for line in lines)


async def test_keyboard_navigation_and_select() -> None:
    app = TableApp(make_runs(1000))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        table.focus()
        start = table.cursor_row
        await pilot.press("up", "up")
        assert table.cursor_row == start - 2
        await pilot.press("down")
        assert table.cursor_row == start - 1
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_offset.y == 0
        assert screen(table)[1].startswith("r1 ")
        await pilot.press("pagedown")
        assert table.cursor_row == table._body_height() - 1
        assert 0 <= cursor_screen_line(table) < table._body_height()
        await pilot.press("end")
        assert table.cursor_run_id == "r1000"
        assert "r1000" in table.visible_run_ids()
        await pilot.press("pageup")
        assert 0 <= cursor_screen_line(table) < table._body_height()
        await pilot.press("full_stop")
        assert table.cursor_run_id == "r990"
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["r990"]
        assert app.highlighted[-1] == "r990"


async def test_mouse_click_moves_cursor_and_double_click_selects() -> None:
    app = TableApp(make_runs(200))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        target = table.visible_run_ids()[2]
        line = screen(table).index(next(l for l in screen(table) if l.startswith(target + " ")))
        await pilot.click(RunTable, offset=(3, line))
        assert table.cursor_run_id == target
        await pilot.click(RunTable, offset=(3, line), times=2)
        await pilot.pause()
        assert app.selected == [target]


async def test_cursor_stays_on_run_when_rows_arrive_above() -> None:
    app = TableApp(runs_100k())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        table.move_to_run("r99985")
        before_line = cursor_screen_line(table)
        before_row = table.cursor_row
        # 500 new runs scheduled long ago sort above the cursor.
        table.apply_runs(make_run(200_000 + i, BASE - 10_000_000 + i) for i in range(500))
        assert table.pending_count == 500
        await pilot.pause(0.3)  # the refresh timer applies the batch
        assert table.pending_count == 0
        assert table.row_count == 100_500
        assert table.cursor_run_id == "r99985"
        assert table.cursor_row == before_row + 500
        assert cursor_screen_line(table) == before_line
        assert table.now_row == 99_990 + 500


async def test_updates_are_coalesced_per_run() -> None:
    app = TableApp(make_runs(100))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        for state in ("starting", "running", "success"):
            table.apply_run(make_run(95, BASE + 5 * 60, state=state, running=BASE))
        assert table.pending_count == 1
        table.flush()
        assert table.store.get("r95")["state"] == "success"


async def test_filter_reduces_rows_and_keeps_cursor() -> None:
    runs = runs_100k()
    app = TableApp(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        failed = [r["run_id"] for r in runs if r["state"] == "failure"]
        table.move_to_run(failed[-5])
        table.set_filter("state:failure")
        await pilot.pause()
        assert table.row_count == len(failed)
        assert table.cursor_run_id == failed[-5]
        assert all(table.store.get(i)["state"] == "failure" for i in table.visible_run_ids())
        assert all(line.split()[1] == "✗" for line in screen(table)[1:] if line.startswith("r"))
        table.set_filter("state:failure nothing-matches-this")
        await pilot.pause()
        assert table.row_count == 0 and table.cursor_run_id is None
        assert "no runs match the filter" in screen(table)[1]
        table.set_filter("")
        assert table.row_count == 100_000


async def test_now_line_moves_with_the_clock() -> None:
    clock = Clock()
    app = TableApp(make_runs(100, future=10), clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        assert table.now_row == 90
        clock.now = BASE + 3 * 60 + 1  # runs at now+0, 1, 2 and 3 minutes are past
        table._tick()
        assert table.now_row == 94
        lines = screen(table)
        now_at = next(i for i, line in enumerate(lines) if line.startswith("── now"))
        assert lines[now_at - 1].startswith("r94 ")
        assert lines[now_at + 1].startswith("r95 ")


async def test_args_become_columns_for_one_job() -> None:
    runs = make_runs(1000)
    app = TableApp(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        assert [c.key for c in table.columns][:4] == ["id", "state", "job", "args"]
        table.set_filter("/group1/job1")
        await pilot.pause()
        keys = [c.key for c in table.columns]
        assert "job" not in keys and "args" not in keys
        assert keys[2:4] == ["arg:date", "arg:n"]
        header = screen(table)[0].split()
        assert header[1:3] == ["date", "n"]
        run = table.cursor_run
        assert run is not None and run["job_id"] == "group1/job1"
        row = table.row_text(table.cursor_row).split()
        assert row[2:4] == [run["args"]["date"], run["args"]["n"]]


async def test_elapsed_ticks_and_late_mark() -> None:
    clock = Clock()
    runs = [
        make_run(1, BASE - 600, state="running", running=BASE - 100),  # started 500 s late
        make_run(2, BASE - 50, state="running", running=BASE - 50),
        make_run(3, BASE - 4000, state="success", running=BASE - 4000, end=BASE - 4000 + 3725),
        make_run(4, BASE - 300, state="scheduled"),  # overdue
    ]
    app = TableApp(runs, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        row = {r: table.row_text(table.store.index_of(r)) for r in ("r1", "r2", "r3", "r4")}
        assert row["r1"].rstrip().endswith("0:01:40 *")
        assert row["r2"].rstrip().endswith("0:00:50")
        assert row["r3"].rstrip().endswith("1:02:05")
        assert row["r4"].rstrip().endswith("*")
        clock.now += 10
        table._tick()
        assert table.row_text(table.store.index_of("r2")).rstrip().endswith("0:01:00")
        assert "0:01:00" in "".join(screen(table))


async def test_wide_table_spells_out_states() -> None:
    app = TableApp(make_runs(50))
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        lines = screen(table)
        assert lines[0].split()[:3] == ["run", "state", "job"]
        assert "✓ success" in "".join(lines)


async def test_empty_table() -> None:
    app = TableApp([])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(RunTable)
        assert table.cursor_run_id is None
        assert "no runs" in screen(table)[1]
        table.focus()
        await pilot.press("down", "enter", "end", "home")
        assert app.selected == []
        table.load([make_run(1, BASE)])
        await pilot.pause()
        assert table.cursor_run_id == "r1"


async def test_ansi_theme_keeps_symbols_and_uses_standard_colours() -> None:
    app = TableApp(make_runs(50))
    async with app.run_test(size=(80, 24)) as pilot:
        app.theme = "ansi-dark"
        await pilot.pause()
        table = app.query_one(RunTable)
        failure = table.store.index_of(
            next(r["run_id"] for r in app.runs if r["state"] == "failure")
        )
        assert failure is not None
        table.move_cursor(0)
        segments = {seg.text: seg.style for seg in table._render_row(failure, cursor=False)}
        assert segments["✗"].color is not None and segments["✗"].color.number == 1  # ANSI red
        assert segments["✗"].bold


async def test_ascii_symbols() -> None:
    class AsciiApp(TableApp):
        def compose(self) -> ComposeResult:
            yield RunTable(clock=self.clock, ascii_symbols=True)

    long_name = "a/very/long/job/name/that/needs/truncating" * 2
    app = AsciiApp([make_run(1, BASE, job_id=long_name), make_run(2, BASE + 60, job_id="b")])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = "".join(screen(app.query_one(RunTable)))
        assert text.isascii()
        assert re.search(r"a/very/long/job/\S*~ ", text)  # ASCII ellipsis


def test_layout_fits_80_columns() -> None:
    for width in (40, 60, 80, 100, 160):
        for arg_widths in (None, {"date": 10, "country": 2}, {"a": 50, "b": 50, "c": 50}):
            columns = layout_columns(width, id_width=7, job_width=60, arg_widths=arg_widths)
            used = sum(c.width for c in columns) + len(columns) - 1
            assert used <= max(width, 46), (width, arg_widths, columns)
    columns = layout_columns(80, id_width=7, job_width=60, arg_widths=None)
    job = next(c for c in columns if c.key == "job")
    assert 8 <= job.width < 30


def test_fit_and_elapsed() -> None:
    assert fit("abcdef", 4) == "abc…"
    assert fit("ab", 4) == "ab  "
    assert fit("ab", 4, align_right=True) == "  ab"
    assert fit("日本語", 4) == "日 …"  # a wide char never splits
    assert format_elapsed(0, narrow=True) == "0:00:00"
    assert format_elapsed(3725, narrow=True) == "1:02:05"
    assert format_elapsed(100 * 3600, narrow=True) == "4d04h"


class CountingTable(RunTable):
    """Counts the lines below the header drawn anew (Textual reuses the others)."""

    drawn = 0

    def render_line(self, y: int) -> Strip:
        self.drawn += y > 0
        return super().render_line(y)


class CountingApp(TableApp):
    def compose(self) -> ComposeResult:
        yield CountingTable(clock=self.clock)


def shown(table: RunTable) -> list[str]:
    """The table's lines as its last frame left them (Textual's copies, redrawn only
    where marked dirty): what the terminal shows."""
    return [strip.text for strip in table.render_lines(table.scrollable_content_region)]


async def test_a_key_redraws_the_two_lines_the_cursor_leaves_and_enters() -> None:
    # A table of 100 000 runs: a frame costs per line drawn, and a key waits for it.
    app = CountingApp(runs_100k())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(CountingTable)
        table.focus()
        table.move_to_run("r50000")  # among finished runs: none is redrawn as the clock ticks
        await pilot.pause()
        for key in ("down", "down", "up"):
            table.drawn = 0
            await pilot.press(key)
            await pilot.pause()
            assert table.drawn == 2
            assert shown(table) == screen(table)
        await pilot.press(*["up"] * 30)  # past the top: the table scrolls
        await pilot.pause()
        assert shown(table) == screen(table)


async def test_updates_redraw_only_the_lines_they_change() -> None:
    app = CountingApp(runs_100k())
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(CountingTable)
        table.move_to_run("r80000")  # among finished runs: none is redrawn as the clock ticks
        await pilot.pause()

        def fail(run_id: str) -> str:
            run = table.store.get(run_id)
            state = "error" if run["state"] == "failure" else "failure"
            table.apply_run({**run, "state": state})
            table.flush()
            return state

        table.drawn = 0
        fail("r50000")  # far above the screen
        await pilot.pause()
        assert table.drawn == 0
        on_screen = table.visible_run_ids()[3]
        state = fail(on_screen)
        await pilot.pause()
        assert table.drawn == 1
        line = next(line for line in shown(table) if line.startswith(f"{on_screen} "))
        assert line.split()[1] == state_symbol(state)
        assert shown(table) == screen(table)


async def test_rows_arriving_above_redraw_nothing() -> None:
    # Each page of a load comes above the screen: the screen shows the same runs.
    app = CountingApp(runs_100k()[50_000:])
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(CountingTable)
        table.move_to_run("r80000")  # among finished runs: none is redrawn as the clock ticks
        await pilot.pause()
        before = shown(table)
        table.drawn = 0
        table.load(runs_100k()[40_000:50_000])
        await pilot.pause()
        assert table.drawn == 0
        assert table.row_count == 60_000
        assert shown(table) == before == screen(table)
