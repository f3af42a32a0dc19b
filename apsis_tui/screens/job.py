"""The Job screen: a job's YAML as written in its file (or, for a job without one,
its parsed definition), its next scheduled runs, and its runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from apsis.present import parse_time
from apsis_tui.filter import format_term
from apsis_tui.model import summarize
from apsis_tui.observe import observe
from apsis_tui.screens.runs import OPERATION_BINDINGS
from apsis_tui.widgets.run_table import RunTable
from apsis_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

NEXT = 20
RUNS = 500


def job_yaml(job: dict[str, Any]) -> str:
    """The job as the daemon understands it (defaults filled in), as YAML."""
    import yaml

    shown = {k: v for k, v in job.items()
             if k not in ("job_id", "source") and v not in ({}, [], None)}
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True)


def schedule_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("local")
    table.add_column("UTC")
    table.add_column("args")
    for entry in entries:
        epoch = parse_time(entry.get("time"))
        if epoch is None:
            continue
        args = " ".join(f"{k}={v}" for k, v in (entry.get("args") or {}).items())
        table.add_row(f"{datetime.fromtimestamp(epoch):%a %Y-%m-%d %H:%M:%S}",
                      f"{datetime.fromtimestamp(epoch, UTC):%m-%d %H:%MZ}", args)
    return table


class JobScreen(Screen[None]):
    """One job; ``c`` creates a run of it, Enter on a run opens it."""

    HELP_NAME = "Job screen"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("c", "new_run", "New run"),
        Binding("f", "show_runs", "In Runs"),
        Binding("d", "tab('definition')", "Definition", show=False),
        Binding("t", "tab('schedule')", "Schedule", show=False),
        Binding("u", "tab('job-runs')", "Runs", show=False),
        *OPERATION_BINDINGS,
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        # The file's text, from GET /jobs/{id} only (the job list and events leave it out).
        self.source: str | None = None

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(f"Job {self.job_id}")
        with TabbedContent(id="job-tabs", initial="definition"):
            with TabPane("Definition", id="definition"):
                with VerticalScroll(id="job-definition"):
                    yield Static("", id="job-yaml")
            with TabPane("Schedule", id="schedule"):
                with VerticalScroll():
                    yield Static("", id="job-schedule")
            with TabPane("Runs", id="job-runs"):
                yield RunTable(clock=self.apsis.clock, id="job-run-table")
        yield Footer()

    def on_mount(self) -> None:
        model = self.apsis.model
        observe(self, model.runs_changed, self._runs_changed)
        observe(self, model.jobs_changed, lambda changed: self._job_changed(changed.job_id))
        self._render_job()
        self.load()

    def _job_changed(self, job_id: str | None) -> None:
        if job_id in (None, self.job_id):
            self._render_job()
            self.load_source()  # the file may have changed with it

    def _render_job(self) -> None:
        job = self.apsis.model.jobs.get(self.job_id)
        widget = self.query_one("#job-yaml", Static)
        if job is None:
            widget.update(Text(f"{self.job_id}: loading…"))
            return
        if self.source is not None:
            source = f"# {self.job_id}\n{self.source}"
        else:
            description = (job.get("metadata") or {}).get("description")
            source = (f"# {self.job_id}\n"
                      + (f"# {str(description).strip()}\n" if description else "")
                      + job_yaml(job))
        widget.update(Syntax(source, "yaml", theme="ansi_dark", word_wrap=True,
                             background_color="default"))

    @work(exclusive=True, group="job-load")
    async def load(self) -> None:
        from apsis.client import ApsisError

        client = self.apsis.client
        try:
            await self._fetch_job()
        except ApsisError as exc:
            if self.job_id not in self.apsis.model.jobs:
                self.query_one("#job-yaml", Static).update(Text(f"{self.job_id}: {exc.message}"))
                return
            # Known from the job list: its parsed definition stays on screen.
        try:
            schedule = await client.job_schedule(self.job_id, limit=NEXT)
            page = await client.runs(job_id=self.job_id, limit=RUNS)
        except ApsisError as exc:
            self.query_one("#job-yaml", Static).update(Text(f"{self.job_id}: {exc.message}"))
            return
        self.query_one("#job-schedule", Static).update(
            schedule_table(schedule) if schedule else Text("not scheduled", style="dim"))
        self.query_one("#job-run-table", RunTable).load([summarize(r) for r in page["runs"]])

    async def _fetch_job(self) -> None:
        """The job with its file's text; the App's job list keeps the parsed job only."""
        job = await self.apsis.client.job(self.job_id)
        self.source = job.get("source")
        self.apsis.model.remember_job(job)
        self._render_job()

    @work(exclusive=True, group="job-source")
    async def load_source(self) -> None:
        from apsis.client import ApsisError

        try:
            await self._fetch_job()
        except ApsisError:
            pass  # removed, or the daemon is away: keep what is shown

    def _runs_changed(self, runs: list[dict[str, Any]]) -> None:
        mine = [run for run in runs if run.get("job_id") == self.job_id]
        if mine:
            self.query_one("#job-run-table", RunTable).apply_runs(mine)

    @on(RunTable.RunSelected)
    def _open(self, event: RunTable.RunSelected) -> None:
        self.apsis.open_run(event.run_id)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_new_run(self) -> None:
        self.apsis.action_new_run(self.job_id)

    def action_show_runs(self) -> None:
        self.apsis.filter_runs(format_term("job", self.job_id))

    def action_tab(self, tab: str) -> None:
        self.query_one("#job-tabs", TabbedContent).active = tab
        if tab == "job-runs":
            self.query_one("#job-run-table", RunTable).focus()

    def action_operation(self, operation: str) -> None:
        table = self.query_one("#job-run-table", RunTable)
        if table.cursor_run_id is not None and table.has_focus:
            self.apsis.request_operation(table.cursor_run_id, operation)
