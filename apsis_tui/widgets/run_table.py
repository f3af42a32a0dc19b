"""RunTable: the live table of runs, rendered line by line over a RunStore.

Textual's DataTable builds every row up front; with 100 000 runs that is seconds of
work and megabytes of renderables. RunTable is a ScrollView that asks the store for
only the rows on screen in ``render_line`` and caches their strips, so first paint
and scrolling cost the same for 100 rows or 100 000.

Updates are coalesced: ``apply_runs`` queues runs by id and a timer (10 Hz by
default) applies the batch and repaints once. The cursor follows its run, and the
run under the cursor keeps its place on screen, when rows arrive above it.

A frame costs per line repainted, so the table repaints only the lines that change:
a key moves the cursor off one line onto another (two lines, unless it scrolls); a
batch of updates repaints the lines whose run, or whose run's state, changed (none
when every run updated is off screen, as most are in a table of 100 000).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from apsis.model.states import State
from apsis.present import (
    ACTIVE_STATES,
    FINISHED_STATES,
    STATE_LOOKS,
    Tone,
    format_elapsed,
    parse_time,
    run_elapsed,
    started_at,
    state_symbol,
)
from apsis_tui.filter import RunFilter
from apsis_tui.filter import parse as parse_filter
from apsis_tui.runstore import Run, RunPredicate, RunStore

# A state's tone (apsis.present) as a theme colour, so it follows the theme (ansi-dark
# gives the 16 standard colours); the symbols carry the state without colour.
TONE_THEME: dict[Tone, str] = {
    "disabled": "$text-disabled",
    "muted": "$text-muted",
    "warning": "$warning",
    "primary": "$primary",
    "success": "$success",
    "error": "$error",
}


def state_css(component: str, *, reverse: bool = True) -> str:
    """CSS rules colouring ``{component}-{state}`` by each state's tone (``reverse``:
    keep the reverse video of the states that have it)."""
    rules = []
    for state, look in STATE_LOOKS.items():
        styles = [s for s, on in (("bold", look.bold), ("reverse", look.reverse and reverse))
                  if on]
        text_style = f" text-style: {' '.join(styles)};" if styles else ""
        rules.append(f"& > .{component}-{state} {{ color: {TONE_THEME[look.tone]};{text_style} }}")
    return "\n        ".join(rules)


Anchor = tuple[str | None, int | None, tuple[object, ...] | None]
NOT_YET = frozenset({State.NEW.value, State.SCHEDULED.value})  # rows drawn muted
LATE_MARK = "*"
ELLIPSIS = "…"
WIDE_WIDTH = 100  # from this width on, states are spelled out
NARROW_WIDTH = 56  # below this width, the start column is dropped


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: ``key`` names what it shows (``arg:NAME`` for an arg)."""

    key: str
    title: str
    width: int
    align_right: bool = False


def layout_columns(
    width: int,
    *,
    id_width: int,
    job_width: int,
    arg_widths: dict[str, int] | None,
    args_width: int | None = None,
) -> tuple[Column, ...]:
    """Fit the columns into ``width`` cells; ``arg_widths`` turns args into columns.

    Fixed columns take what their content needs; the job and args columns share the
    rest, the job column first up to its longest id but no more than about half, the
    args column no more than ``args_width`` (its longest text), so a wide terminal
    does not push the times far from the job.
    """
    wide = width >= WIDE_WIDTH
    fixed = [
        Column("id", "run", max(3, min(id_width, 10))),
        Column("state", "state" if wide else "", 11 if wide else 1),
    ]
    tail = [
        Column("schedule", "schedule", 14),
        Column("start", "start", 8),
        Column("elapsed", "elapsed", 8, align_right=True),
        Column("late", "late" if wide else "", 4 if wide else 1),
    ]
    if width < NARROW_WIDTH:
        tail = [c for c in tail if c.key != "start"]
    flex_count = 2 if arg_widths is None else len(arg_widths)
    used = sum(c.width for c in fixed + tail) + len(fixed) + len(tail) + flex_count - 1
    remain = max(0, width - used)
    flex: list[Column] = []
    if arg_widths is None:
        job = min(max(job_width, 3), max(8, remain * 11 // 20))
        job = min(job, remain)
        args = max(0, remain - job)
        if args_width is not None:
            args = min(args, max(args_width, 4))
            job = min(max(job_width, 3), remain - args)
        flex = [Column("job", "job", job), Column("args", "args", args)]
    else:
        desired = {name: max(len(name), w) for name, w in arg_widths.items()}
        given: dict[str, int] = {}
        left = remain
        pending = sorted(desired, key=desired.__getitem__)
        while pending:
            share = left // len(pending)
            name = pending.pop(0)
            given[name] = min(desired[name], share)
            left -= given[name]
        flex = [Column(f"arg:{name}", name, given[name]) for name in arg_widths]
    return tuple(c for c in fixed + flex + tail if c.width > 0)


def fit(text: str, width: int, align_right: bool = False, ellipsis: str = ELLIPSIS) -> str:
    """Pad or truncate (with an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + ellipsis
    if align_right:
        return " " * (width - length) + text
    return text + " " * (width - length)


def format_local(epoch: float | None, pattern: str) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).strftime(pattern)


class RunTable(ScrollView, can_focus=True):
    """A scrolling table of runs with a cursor, a *now* line and live elapsed times."""

    HELP_NAME = "Run table"  # the section title in the keys help

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open run"),
        Binding("full_stop", "now", "Now"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "run-table--header",
        "run-table--cursor",
        "run-table--now",
        "run-table--muted",
        "run-table--late",
        *(f"run-table--state-{state}" for state in STATE_LOOKS),
    }

    DEFAULT_CSS = """
    RunTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        & > .run-table--header { background: $panel; color: $foreground; text-style: bold; }
        &:ansi > .run-table--header { text-style: bold underline; }
        & > .run-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .run-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .run-table--now { color: $accent; text-style: bold; }
        & > .run-table--muted { color: $text-muted; }
        & > .run-table--late { color: $warning; text-style: bold; }
        STATE_RULES
    }
    """.replace("STATE_RULES", state_css("run-table--state"))

    class RunHighlighted(Message):
        """The cursor moved to another run (``run_id`` is None when the table empties)."""

        def __init__(self, run_table: RunTable, run_id: str | None) -> None:
            super().__init__()
            self.run_table = run_table
            self.run_id = run_id

        @property
        def control(self) -> RunTable:
            return self.run_table

    class RunSelected(Message):
        """The user chose a run (Enter or double click): open it."""

        def __init__(self, run_table: RunTable, run_id: str, run: Run) -> None:
            super().__init__()
            self.run_table = run_table
            self.run_id = run_id
            self.run = run

        @property
        def control(self) -> RunTable:
            return self.run_table

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        refresh_interval: float = 0.1,
        late_after: float = 60.0,
        ascii_symbols: bool = False,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        """``late_after``: seconds after its schedule time a start counts as late.
        ``clock``: the time source (tests pass a fixed one)."""
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.store = store if store is not None else RunStore()
        self.refresh_interval = refresh_interval
        self.late_after = late_after
        self.ascii_symbols = ascii_symbols
        self.clock = clock
        # What an empty table says when no run was ever received (loading, unreachable).
        self.empty_message = "no runs"
        self.filter: RunFilter | None = None
        self._pending: dict[str, Run] = {}
        self._cursor_row = -1
        self._cursor_run_id: str | None = None
        self._now_row = 0
        self._columns: tuple[Column, ...] = ()
        self._columns_key: tuple[object, ...] = ()
        self._columns_checked: tuple[int, int] = (-1, -1)
        self._row_cache: dict[str, tuple[tuple[object, ...], Strip]] = {}
        self._styles: dict[tuple[str | None, bool], Style] = {}
        self._placed = False  # the first rows put the cursor at now
        self._quiet_scroll = False  # a scroll that keeps the screen as it is (see _settle)

    # -- public API ----------------------------------------------------------------

    @property
    def cursor_row(self) -> int:
        """The cursor's row in the filtered view (-1 when there are no rows)."""
        return self._cursor_row

    @property
    def cursor_run_id(self) -> str | None:
        return self._cursor_run_id

    @property
    def cursor_run(self) -> Run | None:
        return None if self._cursor_run_id is None else self.store.get(self._cursor_run_id)

    @property
    def now_row(self) -> int:
        """How many rows are scheduled before now: the *now* line sits above this row."""
        return self._now_row

    @property
    def row_count(self) -> int:
        return len(self.store)

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def pending_count(self) -> int:
        """Runs given to the table and not yet shown (queued or staged)."""
        return len(self._pending) + self.store.staged

    def load(self, runs: Iterable[Run]) -> None:
        """Apply runs at once (initial load, reset): one sort, one repaint."""
        batch = runs if isinstance(runs, list) else list(runs)
        if self._pending:  # later than what is queued: applied after it
            self._pending.update((str(run["run_id"]), run) for run in batch)
            self.flush()
        elif batch:
            anchor = self._anchor()
            self.store.apply_many(batch)
            self._settle(anchor)

    def clear(self) -> None:
        """Forget every run (the event stream was reset and runs will be reloaded)."""
        self._pending.clear()
        self.store.clear()
        self._row_cache.clear()
        self._placed = False
        self._settle((None, None, None))

    def stage(self, runs: list[Run]) -> None:
        """A page of a load, shown at the next `flush` (the caller's to make, a few times
        a second): the work of each page done as it comes, then one merge, one scroll
        and one repaint for every page between two flushes."""
        if self._pending:  # a page is newer than the events queued before it (the model's rule)
            for run in runs:
                self._pending.pop(str(run["run_id"]), None)
        anchor = self._anchor()
        if self.store.stage(runs):
            self._settle(anchor)

    def apply_runs(self, runs: Iterable[Run]) -> None:
        """Queue run updates; the refresh timer applies them in one batch."""
        self._pending.update((str(run["run_id"]), run) for run in runs)

    def apply_run(self, run: Run) -> None:
        self._pending[str(run["run_id"])] = run

    def flush(self) -> None:
        """Apply queued updates and staged pages now, keeping the cursor's run where it is
        on screen."""
        if not self._pending and not self.store.staged:
            return
        anchor = self._anchor()
        self.store.commit()
        batch = list(self._pending.values())
        self._pending.clear()
        self.store.apply_many(batch)
        self._settle(anchor)

    def _flush_updates(self) -> None:
        """The refresh timer: queued updates (staged pages wait for their own flush)."""
        if self._pending:
            self.flush()

    def set_filter(self, filter: str | RunFilter | RunPredicate | None) -> None:
        """Filter rows by a filter string, a parsed filter or any predicate."""
        self.flush()
        if isinstance(filter, str):
            filter = parse_filter(filter)
        self.filter = filter if isinstance(filter, RunFilter) else None
        predicate = None if isinstance(filter, RunFilter) and filter.is_empty else filter
        anchor = self._anchor()
        self.store.set_predicate(predicate)
        self._settle(anchor)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on a row (clamped) and scroll it into view."""
        count = len(self.store)
        row = max(0, min(row, count - 1)) if count else -1
        old, old_row = self._cursor_run_id, self._cursor_row
        self._cursor_row = row
        self._cursor_run_id = self.store.row_id(row) if row >= 0 else None
        self._scroll_cursor_into_view()  # a scroll repaints every line
        if self._cursor_run_id != old:
            # Off one line, onto another: two lines (those on screen) to repaint.
            lines = [self._row_to_line(r) - self.scroll_offset.y + 1 for r in (old_row, row)]
            regions = [Region(0, y, self.size.width, 1) for y in lines
                       if 1 <= y <= self._body_height()]
            if regions:  # (none would repaint every line)
                self.refresh(*regions)
            self.post_message(self.RunHighlighted(self, self._cursor_run_id))

    def move_to_run(self, run_id: str) -> bool:
        """Put the cursor on a run if it is shown; returns whether it is."""
        self.flush()
        row = self.store.index_of(run_id)
        if row is None:
            return False
        self.move_cursor(row)
        return True

    def scroll_to_now(self) -> None:
        """Centre the *now* line and put the cursor on the last run before it."""
        self._update_now()
        self.move_cursor(max(0, self._now_row - 1))
        half = max(1, self._body_height() // 2)
        self.scroll_to(y=max(0, self._now_row - half), animate=False)

    def visible_run_ids(self) -> list[str]:
        """The ids of the rows on screen, top to bottom (for tests and the title)."""
        ids = []
        for y in range(1, self._body_height() + 1):
            row = self._line_to_row(self.scroll_offset.y + y - 1)
            if row is not None and 0 <= row < len(self.store):
                ids.append(self.store.row_id(row))
        return ids

    def row_text(self, row: int) -> str:
        """The plain text of a row as drawn (for tests and accessibility)."""
        self._ensure_columns()
        return self._render_row(row, cursor=False).text

    # -- coordinates ---------------------------------------------------------------
    # Line 0 of the widget is the header. Content lines below it are rows, with the
    # now line inserted before row ``_now_row``.

    def _body_height(self) -> int:
        return max(0, self.scrollable_content_region.height - 1)

    def _content_lines(self) -> int:
        count = len(self.store)
        return count + 1 if count else 1  # the now line, or the "no runs" line

    def _row_to_line(self, row: int) -> int:
        return row + 1 if row >= self._now_row else row

    def _line_to_row(self, line: int) -> int | None:
        if line < self._now_row:
            return line
        if line == self._now_row:
            return None
        return line - 1

    # -- keeping things in place -----------------------------------------------------

    def _anchor(self) -> Anchor:
        """Before a change: the run to keep in place, its offset on screen, and what
        each line shows (to repaint only the lines that the change alters)."""
        lines = self._lines_shown()
        if self._cursor_run_id is None:
            return None, None, lines
        offset = self._row_to_line(self._cursor_row) - self.scroll_offset.y
        if 0 <= offset < self._body_height():
            return self._cursor_run_id, offset, lines
        top = self._line_to_row(self.scroll_offset.y)
        if top is None:
            top = self._now_row
        if 0 <= top < len(self.store):
            return self.store.row_id(top), self._row_to_line(top) - self.scroll_offset.y, lines
        return self._cursor_run_id, None, lines

    def _lines_shown(self) -> tuple[object, ...]:
        """What each line below the header shows: a run (its id, its version in the
        store, whether the cursor is on it), the now line, or nothing."""
        store = self.store
        count = len(store)
        if not count:
            return ("empty",)  # a message: any change repaints it
        cursor = self._cursor_row
        shown: list[object] = []
        for line in range(self.scroll_offset.y, self.scroll_offset.y + self._body_height()):
            row = self._line_to_row(line)
            if row is None:
                shown.append("now")
            elif row < count:
                run_id = store.row_id(row)
                shown.append((run_id, store.stamp(run_id), row == cursor))
            else:
                shown.append(None)
        return tuple(shown)

    def _repaint_changed(self, before: tuple[object, ...] | None) -> None:
        """Repaint the lines that show something else than ``before`` (all, if None)."""
        after = self._lines_shown()
        if before is None or len(before) != len(after) or len(after) == 1:
            self.refresh()
            return
        changed = [y for y, (old, new) in enumerate(zip(before, after), 1) if old != new]
        if len(changed) > len(after) // 2:
            self.refresh()  # one region, not one per line
        elif changed:  # (no region would repaint every line)
            width = self.size.width
            self.refresh(*(Region(0, y, width, 1) for y in changed))

    def _settle(self, anchor: Anchor) -> None:
        """After the store changed: find the cursor's run again, restore the view, and
        repaint what changed."""
        old_id = self._cursor_run_id
        self._update_now()
        self._update_virtual_size()
        count = len(self.store)
        if not self._placed and count:
            self._placed = True
            self.call_after_refresh(self.scroll_to_now)
        row = self.store.index_of(old_id) if old_id is not None else None
        if row is None:
            row = max(0, min(self._cursor_row, count - 1)) if count else -1
        self._cursor_row = row
        self._cursor_run_id = self.store.row_id(row) if row >= 0 else None
        anchor_id, anchor_offset, lines = anchor
        if anchor_id is not None and anchor_offset is not None:
            anchor_row = self.store.index_of(anchor_id)
            if anchor_row is not None:
                target = self._row_to_line(anchor_row) - anchor_offset
                # Rows came or went above: the screen shows what it showed, scrolled
                # (each page of a load). Compared line by line below, not all repainted.
                self._quiet_scroll = True
                try:
                    self.scroll_to(y=max(0, target), animate=False)
                finally:
                    self._quiet_scroll = False
        if self._ensure_columns():
            lines = None  # other columns: every line, and the header
        self._repaint_changed(lines)
        if self._cursor_run_id != old_id:
            self.post_message(self.RunHighlighted(self, self._cursor_run_id))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        if self._quiet_scroll:  # only the thumb moves
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.position = new_value
            return
        super().watch_scroll_y(old_value, new_value)

    def _update_now(self) -> None:
        self._now_row = self.store.now_index(self.clock())

    def _update_virtual_size(self) -> None:
        size = Size(self.scrollable_content_region.width, self._content_lines() + 1)
        if size == self.virtual_size:
            return
        if (size.width == self.virtual_size.width and self.show_vertical_scrollbar
                and size.height > self.virtual_size.height):
            # Only longer, with its scrollbar already: the thumb is all that changes, not
            # the screen's layout (a reflow of every widget and a repaint of the screen,
            # each time the pages of a load are shown). Shorter may clamp the scroll.
            self.set_reactive(RunTable.virtual_size, size)
            bar = self.vertical_scrollbar
            # Nor the thumb, while it would move less than a sixteenth of a cell wherever
            # it is (a few runs more in 100 000): a frame for nothing, ten a second while
            # runs come, and a key pressed meanwhile waits for the next frame.
            track = bar.size.height
            if not track or abs(size.height - bar.window_virtual_size) * 16 * track >= size.height:
                bar.window_virtual_size = size.height
        else:
            self.virtual_size = size

    def _scroll_cursor_into_view(self) -> None:
        if self._cursor_row < 0:
            return
        line = self._row_to_line(self._cursor_row)
        height = self._body_height()
        top = self.scroll_offset.y
        if line < top:
            self.scroll_to(y=line, animate=False)
        elif height and line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False)

    # -- columns and rendering -----------------------------------------------------

    def _ensure_columns(self, width: int | None = None) -> bool:
        """Lay the columns out for the runs in view; returns whether they changed."""
        if width is None:
            width = self.scrollable_content_region.width
        width = width or self.size.width or 80
        if self._columns_checked == (self.store.version, width):
            return False  # render_line calls this per line: stay O(1) between changes
        self._columns_checked = (self.store.version, width)
        single = self.store.single_job()
        arg_widths = self.store.arg_widths() if single is not None else None
        every_arg = self.store.arg_widths() if single is None else {}
        args_width = sum(len(k) + 1 + w for k, w in every_arg.items()) + len(every_arg) - 1
        key = (
            width,
            self.store.id_width(),
            self.store.job_width() if single is None else 0,
            tuple(arg_widths.items()) if arg_widths is not None else None,
            args_width,
        )
        if key != self._columns_key:
            self._columns_key = key
            self._columns = layout_columns(
                width,
                id_width=key[1],  # type: ignore[arg-type]
                job_width=key[2],  # type: ignore[arg-type]
                arg_widths=arg_widths,
                args_width=args_width,
            )
            self._row_cache.clear()
            return True
        return False

    def _symbol(self, state: str) -> str:
        return state_symbol(state, self.ascii_symbols)

    def _cells(self, run: Run, now: float) -> dict[str, tuple[str, str | None]]:
        """Text and component style of each cell of a run's row."""
        state = str(run.get("state", ""))
        times = run.get("times") or {}
        schedule = parse_time(times.get("schedule"))
        started = started_at(times)
        elapsed = format_elapsed(run_elapsed(run, now), narrow=True)
        late = False
        if schedule is not None:
            # Late is about when the scheduler acted: the run's `starting` time.
            began = parse_time(times.get("starting"))
            if began is None:
                began = started
            if began is not None:
                late = began - schedule > self.late_after
            elif state == "scheduled":
                late = now - schedule > self.late_after
        state_style = f"run-table--state-{state}" if state in STATE_LOOKS else None
        wide = any(c.key == "state" and c.width > 1 for c in self._columns)
        symbol = self._symbol(state)
        args = run.get("args") or {}
        muted = "run-table--muted" if state in NOT_YET else None
        cells: dict[str, tuple[str, str | None]] = {
            "id": (str(run.get("run_id", "")), None),
            "state": (f"{symbol} {state}" if wide else symbol, state_style),
            "job": (str(run.get("job_id", "")), None),
            "args": (" ".join(f"{k}={v}" for k, v in args.items()), muted),
            "schedule": (format_local(schedule, "%m-%d %H:%M:%S"), muted),
            "start": (format_local(started, "%H:%M:%S"), None),
            "elapsed": (elapsed, state_style if state in ACTIVE_STATES else None),
            "late": (("late" if wide else LATE_MARK) if late else "", "run-table--late"),
        }
        for name, value in args.items():
            cells[f"arg:{name}"] = (str(value), None)
        return cells

    def _render_row(self, row: int, cursor: bool, width: int | None = None) -> Strip:
        run = self.store.row(row)
        run_id = str(run["run_id"])
        state = run.get("state")
        now = self.clock()
        # Unfinished rows change with the clock (elapsed, late): key them by second.
        tick = None if state in FINISHED_STATES else int(now)
        signature = (self.store.stamp(run_id), cursor, tick)
        cached = self._row_cache.get(run_id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        base = self._style()
        cursor_style = self._style("run-table--cursor") if cursor else None
        cells = self._cells(run, now)
        segments: list[Segment] = []
        for index, column in enumerate(self._columns):
            if index:
                segments.append(Segment(" ", cursor_style or base))
            text, component = cells.get(column.key, ("", None))
            style = base
            if component is not None:
                style = base + self._style(component, partial=True)
            if cursor_style is not None:
                style = cursor_style
            fitted = fit(
                text, column.width, column.align_right, "~" if self.ascii_symbols else ELLIPSIS
            )
            segments.append(Segment(fitted, style))
        strip = self._finish(segments, cursor_style or base, width)
        if len(self._row_cache) > 4096:
            self._row_cache.clear()
        self._row_cache[run_id] = (signature, strip)
        return strip

    def _finish(self, segments: list[Segment], fill: Style, width: int | None = None) -> Strip:
        if width is None:
            width = self.scrollable_content_region.width
        return Strip(segments).adjust_cell_length(width, fill)

    def _render_header(self, width: int) -> Strip:
        style = self._style("run-table--header")
        segments = []
        for index, column in enumerate(self._columns):
            if index:
                segments.append(Segment(" ", style))
            segments.append(Segment(fit(column.title, column.width, column.align_right), style))
        return self._finish(segments, style, width)

    def _render_now_line(self, width: int) -> Strip:
        style = self._style() + self._style("run-table--now", partial=True)
        label = f" now {format_local(self.clock(), '%H:%M:%S')} "
        lead = "──" if not self.ascii_symbols else "--"
        rule = "─" if not self.ascii_symbols else "-"
        text = lead + label
        return Strip([Segment(fit(text + rule * max(0, width - cell_len(text)), width), style)])

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # (not cheap: once a line)
        self._ensure_columns(width)
        if y == 0:
            return self._render_header(width)
        line = self.scroll_offset.y + y - 1
        count = len(self.store)
        if not count:
            if line == 0:
                message = "no runs match the filter" if self.store.total else self.empty_message
                style = self.rich_style + self.get_component_rich_style(
                    "run-table--muted", partial=True
                )
                return Strip([Segment(fit(f"  {message}", width), style)])
            return Strip.blank(width, self.rich_style)
        row = self._line_to_row(line)
        if row is None:
            return self._render_now_line(width)
        if row >= count:
            return Strip.blank(width, self.rich_style)
        return self._render_row(row, cursor=row == self._cursor_row, width=width)

    def _style(self, component: str | None = None, *, partial: bool = False) -> Style:
        """The table's rich style, or a component's, kept until the styles change (Textual
        empties its own cache at every refresh: a key's two lines looked them up again)."""
        key = (component, partial)
        style = self._styles.get(key)
        if style is None:
            style = self.rich_style if component is None else self.get_component_rich_style(
                component, partial=partial)
            self._styles[key] = style
        return style

    def notify_style_update(self) -> None:
        # Theme or focus changed: cached strips and styles carry old colours.
        self._row_cache.clear()
        self._styles.clear()
        super().notify_style_update()

    # -- events and actions ----------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(self.refresh_interval, self._flush_updates)
        self.set_interval(1.0, self._tick)
        self._update_virtual_size()

    def on_resize(self, event: events.Resize) -> None:
        self._update_virtual_size()
        self._ensure_columns()
        self._row_cache.clear()
        self._scroll_cursor_into_view()

    def on_focus(self, event: events.Focus) -> None:
        self._row_cache.clear()
        self._styles.clear()  # the cursor's colours
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self._row_cache.clear()
        self._styles.clear()  # the cursor's colours
        self.refresh()

    def _tick(self) -> None:
        """Once a second: move the now line and repaint rows whose clock cells tick."""
        old_now = self._now_row
        self._update_now()
        if self._now_row != old_now:
            # Rows keep their lines except those the now line moved past: no scroll.
            self.refresh()
            return
        top = self.scroll_offset.y
        count = len(self.store)
        for y in range(1, self._body_height() + 1):
            row = self._line_to_row(top + y - 1)
            if row is None:
                self.refresh(Region(0, y, self.size.width, 1))  # the now line shows the clock
            elif 0 <= row < count and self.store.row(row).get("state") not in FINISHED_STATES:
                self.refresh(Region(0, y, self.size.width, 1))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = self._line_to_row(self.scroll_offset.y + offset.y - 1)
        if row is None or not 0 <= row < len(self.store):
            return
        event.stop()
        self.focus()
        self.move_cursor(row)
        if event.chain >= 2:
            self.action_select()

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self._cursor_row - max(1, self._body_height() - 1))

    def action_page_down(self) -> None:
        self.move_cursor(self._cursor_row + max(1, self._body_height() - 1))

    def action_first(self) -> None:
        self.move_cursor(0)
        self.scroll_to(y=0, animate=False)

    def action_last(self) -> None:
        self.move_cursor(len(self.store) - 1)
        self.scroll_to(y=self.max_scroll_y, animate=False)

    def action_now(self) -> None:
        self.scroll_to_now()

    def action_select(self) -> None:
        run = self.cursor_run
        if run is not None and self._cursor_run_id is not None:
            self.post_message(self.RunSelected(self, self._cursor_run_id, run))
