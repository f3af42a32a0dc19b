"""The Runs screen: every loaded run, live, with a filter box that is remembered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from apsis_tui.filter import add_term, format_term
from apsis_tui.observe import observe
from apsis_tui.widgets.run_table import RunTable
from apsis_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

FILTER_HELP = "/ filter: job:X state:S label:L arg=val /path text"
FILTER_DELAY = 0.15  # seconds of typing pause before re-filtering 100 000 rows
SHOW_PAGES_EVERY = 0.2  # seconds between two repaints of the table during a load

# Operations on the run under the cursor, shared by the screens that show runs.
OPERATION_BINDINGS: list[BindingType] = [
    Binding("k", "operation('skip')", "Skip", show=False),
    Binding("s", "operation('start')", "Start", show=False),
    Binding("x", "operation('stop')", "Stop", show=False),
    Binding("r", "operation('rerun')", "Rerun", show=False),
    Binding("m", "operation('mark')", "Mark", show=False),
    Binding("g", "operation('signal')", "Signal", show=False),
]


def filter_choices(run: dict[str, Any]) -> list[tuple[str, str]]:
    """Terms a row offers to the filter: its job, the job's folders, args, labels, state."""
    job_id = str(run.get("job_id", ""))
    terms = [format_term("job", job_id)]
    parts = job_id.split("/")
    terms += [format_term("path", "/".join(parts[:i])) for i in range(1, len(parts))]
    terms += [format_term("arg", str(v), name=k) for k, v in (run.get("args") or {}).items()]
    terms += [format_term("label", str(label)) for label in run.get("labels") or ()]
    terms.append(format_term("state", str(run.get("state", ""))))
    return [(term, term) for term in terms]


class RunsScreen(Screen[None]):
    """The live run table; Enter opens a run, ``/`` filters, ``j``/``a`` add terms."""

    HELP_NAME = "Runs screen"
    AUTO_FOCUS = "#runs-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("j", "filter_job", "Job filter", show=False),
        Binding("a", "filter_pick", "Add filter term", show=False),
        Binding("ctrl+u", "clear_filter", "Clear filter", show=False),
        *OPERATION_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self._filter_timer: Timer | None = None
        self._received = False  # a batch of runs reached the table
        # Pages arrive newest first, the far future first: keep the cursor at *now*
        # as each lands, until the user moves it (a click, or a key: the App notes it
        # before the table moves the cursor, so no page can put it back at now).
        self._keep_at_now = True
        self._count_text = ""  # what the run count says
        self._show_timer: Timer | None = None  # shows the pages of a load staged meanwhile

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    @property
    def table(self) -> RunTable:
        return self.query_one("#runs-table", RunTable)

    def compose(self) -> ComposeResult:
        app = self.apsis
        yield StatusBar("Runs")
        with Horizontal(id="filter-row"):
            yield Input(app.tui_state.filter_for(app.url), placeholder=FILTER_HELP, id="filter")
            yield Static("", id="run-count")
        yield RunTable(clock=app.clock, id="runs-table")
        yield Footer()

    def on_mount(self) -> None:
        model = self.apsis.model
        table = self.table
        table.set_filter(self.query_one("#filter", Input).value)
        observe(self, model.runs_changed, self._runs_changed)
        observe(self, model.runs_reset, lambda _: self._reset())
        observe(self, model.connection_changed, lambda _: self._update_count())
        if model.runs:
            table.load(list(model.runs.values()))
            self._received = True
        self._update_count()
        self.set_interval(0.5, self._update_count)

    def _runs_changed(self, runs: list[dict[str, Any]]) -> None:
        table = self.table
        self._received = True
        if not table.store.total:
            table.load(runs)  # the first runs: shown at once (the table puts them at now)
            self._update_count()
        elif len(runs) > 1:
            # A page of the initial load (an event changes one run): merged as it comes
            # (no frame has to merge tens of thousands of runs), shown with the pages
            # before it a few times a second: one scroll, count and repaint for them all.
            table.stage(runs)
            if self._show_timer is None:
                self._show_timer = self.set_timer(SHOW_PAGES_EVERY, self._show_pages)
        else:
            # Events: coalesced, painted at most 10 times a second; the count follows at
            # its next half second (a frame of its own for each event is a frame a key
            # may wait behind).
            table.apply_runs(runs)

    def _show_pages(self) -> None:
        self._show_timer = None
        table = self.table
        table.flush()
        self._update_count()
        if self._keep_at_now and self.apsis.key_pressed_at is None:
            table.scroll_to_now()  # in the same repaint

    def _reset(self) -> None:
        self._received = False
        self.table.clear()
        self._update_count()

    def _update_count(self) -> None:
        table = self.table
        model = self.apsis.model
        empty = "no runs"
        if not model.loaded:
            empty = ("loading runs…" if model.connection != "down" else
                     f"{model.connection_detail or f'cannot reach Apsis at {self.apsis.url}'}"
                     "; retrying")
        if empty != table.empty_message:
            table.empty_message = empty
            table.refresh()
        if not self._received and not (model.loaded and not model.runs):
            self._show_count("loading…")
            return
        total = table.store.total
        shown = table.row_count
        text = f"{shown:,} runs" if shown == total else f"{shown:,} of {total:,}"
        single = table.store.single_job() if shown != total else None
        if single is not None:
            text = f"{single} · {text}"  # the table drops its job column then: say it here
        self._show_count(text)

    def _show_count(self, text: str) -> None:
        """A new count re-lays the screen out only when it needs another width (each page
        of the initial load changes the count, rarely its width)."""
        if text != self._count_text:
            self.query_one("#run-count", Static).update(
                text, layout=len(text) != len(self._count_text))
            self._count_text = text

    # -- the filter ------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filter)

    def _apply_filter(self) -> None:
        self._filter_timer = None
        text = self.query_one("#filter", Input).value
        self.table.set_filter(text)
        self.apsis.tui_state.set_filter(self.apsis.url, text)
        self._update_count()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter()
        self.table.focus()

    def add_filter_term(self, term: str) -> None:
        """Add a term (a job, an arg) to the filter and apply it at once."""
        box = self.query_one("#filter", Input)
        box.value = add_term(box.value, term)
        self._apply_filter()
        self.table.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self._apply_filter()

    def action_filter_job(self) -> None:
        run = self.table.cursor_run
        if run is not None:
            self.add_filter_term(format_term("job", str(run.get("job_id", ""))))

    def action_filter_pick(self) -> None:
        from apsis_tui.screens.dialogs import PickDialog

        run = self.table.cursor_run
        if run is None:
            return

        def picked(term: str | None) -> None:
            if term:
                self.add_filter_term(term)

        self.app.push_screen(PickDialog("Add to the filter", filter_choices(dict(run))), picked)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._keep_at_now = False

    def key_escape(self) -> None:
        if self.focused is self.query_one("#filter", Input):
            self.table.focus()

    def key_down(self) -> None:
        if self.focused is self.query_one("#filter", Input):
            self.table.focus()

    # -- runs ------------------------------------------------------------------------

    @on(RunTable.RunSelected)
    def _open(self, event: RunTable.RunSelected) -> None:
        self.apsis.open_run(event.run_id)

    def action_operation(self, operation: str) -> None:
        run_id = self.table.cursor_run_id
        if run_id is not None:
            self.apsis.request_operation(run_id, operation)

    def show_rerun(self, run_id: str, rerun_id: str) -> None:
        """A run was rerun: put the cursor on the new run (Enter opens it)."""
        self.table.flush()
        self.table.move_to_run(rerun_id)
