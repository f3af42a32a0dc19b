"""The Timeline screen: when did what run, and for how long, over the last hours."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from apsis_tui.filter import format_term
from apsis_tui.observe import observe
from apsis_tui.widgets.status_bar import StatusBar
from apsis_tui.widgets.timeline import TimelineView

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

LEGEND = " █ success  ▓ failed  ░ skipped  ▶ running  · scheduled  │ now"
LEGEND_ASCII = " # success  X failed  - skipped  > running  . scheduled  | now"


class TimelineScreen(Screen[None]):
    """Bars per job; Enter shows the job's runs on the Runs screen."""

    HELP_NAME = "Timeline screen"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.switch_mode('runs')", "Runs", show=False),
    ]

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar("Timeline")
        yield TimelineView(lambda: self.apsis.model.runs.values(), clock=self.apsis.clock,
                           id="timeline")
        yield Static(LEGEND, id="timeline-legend")
        yield Footer()

    def on_mount(self) -> None:
        view = self.query_one(TimelineView)
        observe(self, self.apsis.model.runs_changed, lambda _: view.mark_dirty())
        observe(self, self.apsis.model.runs_reset, lambda _: view.mark_dirty())
        view.focus()

    @on(TimelineView.JobSelected)
    def _selected(self, event: TimelineView.JobSelected) -> None:
        self.apsis.filter_runs(format_term("job", event.job_id))
