"""TimelineView: runs of the last hours as horizontal bars, one line per job.

Each line is the job's id and a strip of cells, one cell a slice of the window;
a run fills the cells from its start to its end (or to now while it runs), in its
state's colour and with its state's shape, so the picture survives NO_COLOR.
The window ends a little after now, where scheduled runs show as dots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from apsis.present import FINISHED_STATES, STATE_LOOKS, finished_at, parse_time, started_at
from apsis_tui.widgets.run_table import fit, state_css

SPANS_HOURS = (1.0, 3.0, 6.0, 12.0, 24.0, 72.0)
TICKS = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)  # seconds
FUTURE_FRACTION = 0.1  # of the window, after now
# Which state wins a cell two runs share: the one a person needs to see.
PRIORITY = {"error": 6, "failure": 5, "running": 4, "stopping": 4, "starting": 3,
            "success": 2, "skipped": 1, "scheduled": 0, "waiting": 0, "new": 0}
BAR = {"success": "█", "failure": "▓", "error": "▓", "skipped": "░", "running": "▶",
       "starting": "▷", "stopping": "■"}
BAR_ASCII = {"success": "#", "failure": "X", "error": "!", "skipped": "-", "running": ">",
             "starting": ">", "stopping": "="}


@dataclass(frozen=True, slots=True)
class Bar:
    start: float
    end: float | None  # None: still running, or only scheduled
    state: str


def collect_bars(runs: Iterable[Mapping[str, Any]], start: float,
                 end: float) -> dict[str, list[Bar]]:
    """Per job id, the runs that touch the window [start, end]."""
    bars: dict[str, list[Bar]] = {}
    for run in runs:
        times = run.get("times") or {}
        state = str(run.get("state", ""))
        begin = started_at(times)
        if begin is None:
            when = parse_time(times.get("schedule"))
            if when is None or not start <= when <= end or state not in ("scheduled", "waiting"):
                continue
            bars.setdefault(str(run.get("job_id")), []).append(Bar(when, None, state))
            continue
        finish = finished_at(times) if state in FINISHED_STATES else None
        if finish is not None and finish < start or begin > end:
            continue
        bars.setdefault(str(run.get("job_id")), []).append(
            Bar(begin, finish if finish is not None and finish >= begin else None, state))
    return bars


class TimelineView(ScrollView, can_focus=True):
    """Bars per job over a window of hours; ``+``/``-`` zoom, Enter picks the job."""

    HELP_NAME = "Timeline"  # the section title in the keys help

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in"),
        Binding("minus", "zoom(1)", "Zoom out"),
        Binding("enter", "select", "Its runs"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--axis",
        "timeline--label",
        "timeline--cursor",
        "timeline--now",
        "timeline--empty",
        *(f"timeline--state-{state}" for state in STATE_LOOKS),
    }

    DEFAULT_CSS = """
    TimelineView {
        background: $surface;
        overflow-x: hidden;
        overflow-y: auto;
        & > .timeline--axis { background: $panel; text-style: bold; }
        & > .timeline--label { color: $foreground; }
        & > .timeline--cursor { background: $block-cursor-blurred-background; }
        &:focus > .timeline--cursor { background: $block-cursor-background;
                                      color: $block-cursor-foreground; }
        & > .timeline--now { color: $accent; }
        & > .timeline--empty { color: $text-disabled; }
        STATE_RULES
    }
    """.replace("STATE_RULES", state_css("timeline--state", reverse=False))

    class JobSelected(Message):
        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, source: Callable[[], Iterable[Mapping[str, Any]]], *,
                 clock: Callable[[], float] = time.time, hours: float = 6.0,
                 ascii_symbols: bool = False, id: str | None = None) -> None:
        """``source`` returns every run (the App's summaries); read at most once a second."""
        super().__init__(id=id)
        self.source = source
        self.clock = clock
        self.hours = hours
        self.ascii_symbols = ascii_symbols
        self.cursor = 0
        self._jobs: list[str] = []
        self._bars: dict[str, list[Bar]] = {}
        self._dirty = True

    # -- data --------------------------------------------------------------------------

    def window(self) -> tuple[float, float]:
        span = self.hours * 3600
        end = self.clock() + span * FUTURE_FRACTION
        return end - span, end

    def mark_dirty(self) -> None:
        """Runs changed: rebuild the bars on the next tick."""
        self._dirty = True

    def rebuild(self) -> None:
        start, end = self.window()
        self._bars = collect_bars(self.source(), start, end)
        self._jobs = sorted(self._bars)
        self._dirty = False
        self.cursor = max(0, min(self.cursor, len(self._jobs) - 1))
        self.virtual_size = Size(self.size.width, len(self._jobs) + 1)
        self.refresh()

    @property
    def jobs(self) -> list[str]:
        return list(self._jobs)

    def on_mount(self) -> None:
        self.rebuild()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self._dirty:
            self.rebuild()
        else:
            self.refresh()  # the bars of running runs and the now mark move

    # -- rendering -----------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        return self.rich_style + self.get_component_rich_style(name, partial=True)

    def _label_width(self, width: int) -> int:
        longest = max((len(j) for j in self._jobs), default=8)
        return max(8, min(longest + 1, width * 3 // 10, 32))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        label_width = self._label_width(width)
        cells = max(1, width - label_width - 1)
        start, end = self.window()
        step = (end - start) / cells
        now_cell = int((self.clock() - start) / step)
        if y == 0:
            return self._axis(width, label_width, cells, start, step)
        index = self.scroll_offset.y + y - 1
        if not self._jobs and index == 0:
            text = fit("  no runs in this window (+/- to zoom)", width)
            return Strip([Segment(text, self._style("timeline--empty"))])
        if index >= len(self._jobs):
            return Strip.blank(width, self.rich_style)
        job_id = self._jobs[index]
        label_style = self._style("timeline--cursor" if index == self.cursor
                                  else "timeline--label")
        segments = [Segment(fit(job_id, label_width), label_style), Segment(" ", self.rich_style)]
        chars: list[tuple[str, str | None]] = [(" ", None)] * cells
        if 0 <= now_cell < cells:
            chars[now_cell] = ("│" if not self.ascii_symbols else "|", "now")
        ranks = [-1] * cells
        now = self.clock()
        for bar in self._bars.get(job_id, ()):
            first = int((max(bar.start, start) - start) / step)
            if bar.end is None and bar.state in ("scheduled", "waiting", "new"):
                last = first
                char = "·" if not self.ascii_symbols else "."
            else:
                stop = bar.end if bar.end is not None else now
                last = int((min(stop, end) - start) / step)
                table = BAR_ASCII if self.ascii_symbols else BAR
                char = table.get(bar.state, "█")
            rank = PRIORITY.get(bar.state, 0)
            for cell in range(max(0, first), min(cells - 1, last) + 1):
                if rank >= ranks[cell]:
                    ranks[cell] = rank
                    chars[cell] = (char, bar.state)
        styles: dict[str | None, Style] = {None: self.rich_style,
                                           "now": self._style("timeline--now")}
        for char, state in chars:
            if state not in styles:
                styles[state] = self._style(f"timeline--state-{state}")
            segments.append(Segment(char, styles[state]))
        return Strip(segments).adjust_cell_length(width, self.rich_style)

    def _axis(self, width: int, label_width: int, cells: int, start: float,
              step: float) -> Strip:
        """Times at round local hours or minutes, at least 8 cells apart."""
        style = self._style("timeline--axis")
        line = [" "] * cells
        tick = next((t for t in TICKS if t / step >= 8), TICKS[-1])
        offset = datetime.fromtimestamp(start).astimezone().utcoffset()
        shift = offset.total_seconds() if offset is not None else 0.0
        first = (int((start + shift) // tick) + 1) * tick - shift
        pattern = "%H:%M" if tick < 86400 else "%m-%d"
        when = first
        while (cell := int((when - start) / step)) < cells - 5:
            label = datetime.fromtimestamp(when).strftime(pattern)
            line[cell:cell + len(label)] = list(label)
            when += tick
        head = fit(f"last {self.hours:g}h", label_width)
        return Strip([Segment(head + " " + "".join(line)[:cells], style)]).adjust_cell_length(
            width, style)

    # -- actions ---------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        if not self._jobs:
            return
        self.cursor = max(0, min(len(self._jobs) - 1, self.cursor + delta))
        height = self.scrollable_content_region.height - 1
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)
        self.refresh()

    def action_zoom(self, direction: int) -> None:
        spans = list(SPANS_HOURS)
        index = min(range(len(spans)), key=lambda i: abs(spans[i] - self.hours))
        self.hours = spans[max(0, min(len(spans) - 1, index + direction))]
        self.rebuild()

    def action_select(self) -> None:
        if self._jobs:
            self.post_message(self.JobSelected(self._jobs[self.cursor]))
