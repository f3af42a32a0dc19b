"""The Run screen: one run's instance, state, times, program, conditions, log and
output (live, with ANSI colours), and its raw JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast
from zoneinfo import ZoneInfo

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from apsis.model.states import State
from apsis.present import (
    ACTIVE_STATES,
    FINISHED_STATES,
    STATE_LOOKS,
    STATES,
    format_elapsed,
    parse_time,
    run_elapsed,
    state_label,
    state_look,
)
from apsis_tui.messages import RunLogged
from apsis_tui.observe import observe
from apsis_tui.screens.runs import OPERATION_BINDINGS
from apsis_tui.widgets.output_view import OutputPane
from apsis_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

STARTED_STATES = ACTIVE_STATES | (FINISHED_STATES - {State.SKIPPED.value})
TIME_ORDER = ("schedule", *STATES, "stop")


def relative(seconds: float) -> str:
    """``3m ago`` or ``in 2h``: how far a time is from now, roughly."""
    future = seconds < 0
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            text = f"{int(span // size)}{unit}"
            break
    else:
        text = f"{int(span)}s"
    return f"in {text}" if future else f"{text} ago"


def schedule_zone(run: Mapping[str, Any], job: Mapping[str, Any] | None) -> str | None:
    """The time zone of the schedule that made the run: the first of the job's
    schedules with a zone whose args the run carries."""
    if not job:
        return None
    args = run.get("args") or {}
    schedules = job.get("schedule") or []
    if isinstance(schedules, dict):
        schedules = [schedules]
    for schedule in schedules:
        zone = schedule.get("tz")
        wanted = schedule.get("args") or {}
        if zone and all(args.get(k) == str(v) for k, v in wanted.items()):
            return str(zone)
    return None


def times_table(run: Mapping[str, Any], zone: str | None, now: float) -> Table:
    """Each recorded time in local time, UTC and the schedule's zone, and how long ago."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("time")
    table.add_column("local")
    table.add_column("UTC")
    tz = None
    if zone:
        try:
            tz = ZoneInfo(zone)
            table.add_column(zone.split("/")[-1].replace("_", " "))
        except (KeyError, ValueError):
            tz = None
    table.add_column("", justify="right")
    times = run.get("times") or {}
    for key in sorted(times, key=lambda k: TIME_ORDER.index(k) if k in TIME_ORDER else 99):
        epoch = parse_time(times[key])
        if epoch is None:
            continue
        row = [key, f"{datetime.fromtimestamp(epoch):%Y-%m-%d %H:%M:%S}",
               f"{datetime.fromtimestamp(epoch, UTC):%H:%M:%SZ}"]
        if tz is not None:
            row.append(f"{datetime.fromtimestamp(epoch, tz):%m-%d %H:%M %Z}")
        row.append(relative(now - epoch))
        table.add_row(*row)
    return table


def expected_outputs(run: Mapping[str, Any]) -> list[str]:
    """The output ids a run has or will have: ``outputs: split`` names stdout then stderr
    even before the program wrote to both (a listing taken just as it starts may hold one,
    or stderr first), then any others listed; else as listed, or "output"."""
    listed = [o["output_id"] for o in run.get("outputs") or [] if o.get("output_id")]
    program = run.get("program") or {}
    declared = ["stdout", "stderr"] if program.get("outputs") == "split" else []
    return declared + [i for i in listed if i not in declared] or ["output"]


def dependency_args(run: Mapping[str, Any], condition: Mapping[str, Any],
                    params: list[str] | None) -> dict[str, str]:
    """The args of the run a dependency waits for: the run's own args for the other
    job's params, overridden by the condition's."""
    own = run.get("args") or {}
    base = {k: v for k, v in own.items() if params is None or k in params}
    return {**base, **{k: str(v) for k, v in (condition.get("args") or {}).items()}}


class RunScreen(Screen[None]):
    """One run, kept live from the App's event stream."""

    HELP_NAME = "Run screen"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("i", "tab('details')", "Details"),
        Binding("l", "tab('log')", "Log"),
        Binding("o", "tab('output')", "Output"),
        # Shown only for a run with several outputs (check_action hides it otherwise).
        Binding("O", "cycle_output", "Next output", key_display="O"),
        Binding("J", "toggle_json", "JSON", key_display="J"),
        # Shown only when the run has dependencies or reruns to go to.
        Binding("d", "dependency", "Dependency"),
        *OPERATION_BINDINGS,
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_data: dict[str, Any] = {}
        self.log_entries: list[dict[str, Any]] = []
        self.output_started = False
        self.output_ids: list[str] = []  # known once the run is loaded
        self.output_id: str | None = None  # the one the Output tab shows
        self._before_json = "details"
        self._deps: list[tuple[str, Any]] = []

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(f"Run {self.run_id}")
        yield Static(Text(f" {self.run_id}  loading…"), id="run-summary")
        with TabbedContent(id="run-tabs"):
            with TabPane("Details", id="details"):
                with VerticalScroll(id="details-scroll"):
                    yield Static("", id="details-text")
                    yield Label("Dependencies (Enter opens)", id="deps-title")
                    yield OptionList(id="deps")
            with TabPane("Log", id="log"):
                with VerticalScroll():
                    yield Static("", id="log-text")
            with TabPane("Output", id="output"):
                yield OutputPane(id="output-pane")
            with TabPane("JSON", id="json"):
                with VerticalScroll():
                    yield Static("", id="json-text")
        yield Footer()

    def on_mount(self) -> None:
        model = self.apsis.model
        known = model.runs.get(self.run_id)
        if known:
            self.run_data = dict(known)
            self._render_all()
        observe(self, model.runs_changed, self._runs_changed)
        observe(self, model.run_logged, self._logged)
        self.set_interval(1.0, self._tick)
        self.load()

    # -- data --------------------------------------------------------------------------

    @work(exclusive=True, group="run-load")
    async def load(self) -> None:
        from apsis.client import ApsisError, ApsisNotFound

        client = self.apsis.client
        try:
            run = await client.run(self.run_id)
            log = await client.run_log(self.run_id)
        except ApsisNotFound:
            self.query_one("#run-summary", Static).update(Text(f" no run {self.run_id}"))
            return
        except ApsisError as exc:
            self.notify(f"{self.run_id}: {exc.message}", severity="error")
            return
        self.run_data = {**self.run_data, **run}
        self.log_entries = log
        self._set_outputs(expected_outputs(run))
        if self.apsis.model.jobs.get(run.get("job_id", "")) is None:
            try:
                self.apsis.model.remember_job(await client.job(run["job_id"]))
            except ApsisError:
                pass
        tab = "output" if run.get("state") in STARTED_STATES else "details"
        self.query_one("#run-tabs", TabbedContent).active = tab
        self._focus_tab(tab)  # so the tab's own keys work (and show) at once
        view = self.query_one("#output-pane", OutputPane).view
        if run.get("state") == "skipped":
            view.empty_message = "no output: the run was skipped"
        elif run.get("state") not in STARTED_STATES:
            view.empty_message = "no output yet: it streams here once the run starts"
        self._render_all()
        self._maybe_stream_output()

    def _runs_changed(self, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            if run.get("run_id") == self.run_id:
                self.run_data = {**self.run_data, **run}
                self._render_all()
                self._maybe_stream_output()
        if any(run.get("rerun_of") == self.run_id for run in runs):
            self._render_details()  # lists the new rerun

    def _logged(self, logged: RunLogged) -> None:
        if logged.run_id == self.run_id:
            self.log_entries.append(logged.entry)
            self._render_log()

    def _maybe_stream_output(self) -> None:
        if not self.output_started and self.run_data.get("state") in STARTED_STATES:
            self.output_started = True
            self.stream_output()

    @work(exclusive=True, group="run-output")
    async def stream_output(self) -> None:
        """The output from its start, live until the run is done (the client resumes
        from its offset after a dropped connection)."""
        from apsis.client import ApsisError

        client = self.apsis.client
        pane = self.query_one("#output-pane", OutputPane)
        try:
            listed = await client.outputs(self.run_id)
            self._set_outputs(expected_outputs({**self.run_data, "outputs": listed}))
            output_id = self.output_id or self.output_ids[0]
            pane.view.clear()
            pane.set_complete(False)
            pane.view.empty_message = "no output yet"
            async for data in client.output(self.run_id, output_id, follow=True):
                pane.append(data)
        except ApsisError as exc:
            if self.run_data.get("state") in FINISHED_STATES:
                pane.view.empty_message = f"no output: {exc.message}"
            else:
                self.output_started = False  # not there yet: try again on the next change
            return
        # The stream ends when the run has finished: all its output is here.
        pane.view.empty_message = "no output"
        pane.set_complete(True)

    def _set_outputs(self, output_ids: list[str]) -> None:
        if output_ids == self.output_ids:
            return
        self.output_ids = output_ids
        if self.output_id not in output_ids:
            self.output_id = output_ids[0]
        self._show_output_choice()
        self.refresh_bindings()

    def _show_output_choice(self) -> None:
        """Name the shown output in the tab and the status line, when there is a choice."""
        several = len(self.output_ids) > 1
        tab = self.query_one("#run-tabs", TabbedContent).get_tab("output")
        tab.label = f"Output: {self.output_id}" if several else "Output"
        label = ""
        if several and self.output_id is not None:
            index = self.output_ids.index(self.output_id) + 1
            label = f"{self.output_id} ({index}/{len(self.output_ids)}, O: next)"
        self.query_one("#output-pane", OutputPane).set_label(label)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cycle_output":
            return len(self.output_ids) > 1
        if action == "dependency":
            return bool(self._deps)
        return True

    # -- rendering ---------------------------------------------------------------------

    def _render_all(self) -> None:
        self._render_summary()
        self._render_details()
        self._render_log()
        self._render_json()

    def _tick(self) -> None:
        if self.run_data.get("state") not in FINISHED_STATES:
            self._render_summary()

    def _render_summary(self) -> None:
        run = self.run_data
        if not run:
            return
        state = str(run.get("state", "?"))
        line = Text(" ")
        line.append(f"{self.run_id} ", style="bold")
        line.append(state_label(state), style=state_look(state).style)
        line.append(f"  {run.get('job_id', '')}", style="bold")
        args = run.get("args") or {}
        if args:
            line.append("  " + " ".join(f"{k}={v}" for k, v in args.items()))
        second = Text(" ")
        elapsed = format_elapsed(run_elapsed(run, self.apsis.clock()))
        parts = []
        if elapsed:
            parts.append(f"elapsed {elapsed}")
        message = str(run.get("message") or "")
        # The daemon's message often says "exit code 3" already: say it once.
        if run.get("exit_code") is not None and f"exit code {run['exit_code']}" not in message:
            parts.append(f"exit {run['exit_code']}")
        if run.get("signal") and str(run["signal"]) not in message:
            parts.append(f"signal {run['signal']}")
        if run.get("attempt", 1) and run.get("attempt", 1) > 1:
            parts.append(f"attempt {run['attempt']}")
        if message:
            parts.append(message)
        second.append("  ·  ".join(parts) if parts else "", style="dim")
        self.query_one("#run-summary", Static).update(Group(line, second))

    def _render_details(self) -> None:
        import yaml

        run = self.run_data
        if not run:
            return
        job = self.apsis.model.jobs.get(str(run.get("job_id", "")))
        now = self.apsis.clock()
        blocks: list[Any] = [Text("Instance", style="bold underline")]
        blocks.append(Text(f"  job   {run.get('job_id', '')}"))
        for name, value in (run.get("args") or {}).items():
            blocks.append(Text(f"  {name} = {value}"))
        if run.get("labels"):
            blocks.append(Text(f"  labels {', '.join(run['labels'])}"))
        if run.get("rerun_of"):
            blocks.append(Text(f"  rerun of {run['rerun_of']}"))
        blocks += [Text(""), Text("Times", style="bold underline"),
                   times_table(run, schedule_zone(run, job), now)]
        if run.get("program"):
            blocks += [Text(""), Text("Program", style="bold underline"),
                       Text(_indent(yaml.safe_dump(run["program"], sort_keys=False)))]
        conditions = run.get("conditions") or []
        blocks += [Text(""), Text("Conditions", style="bold underline")]
        blocks.append(Text(_indent(yaml.safe_dump(conditions, sort_keys=False)) if conditions
                           else "  none"))
        actions = run.get("actions") or []
        blocks += [Text(""), Text("Actions", style="bold underline")]
        blocks.append(Text(_indent(yaml.safe_dump(actions, sort_keys=False)) if actions
                           else "  none"))
        self.query_one("#details-text", Static).update(Group(*blocks))
        self._render_deps(run, conditions)

    def _render_deps(self, run: Mapping[str, Any], conditions: list[Any]) -> None:
        deps: list[tuple[str, Any]] = []
        if run.get("rerun_of"):
            deps.append((f"rerun of {run['rerun_of']}", ("run", run["rerun_of"])))
        deps += [(f"rerun as {rerun}", ("run", rerun)) for rerun in self._reruns()]
        for condition in conditions:
            if isinstance(condition, dict) and condition.get("type") == "dependency":
                target = self.apsis.model.jobs.get(str(condition.get("job_id")))
                params = list(target.get("params") or []) if target else None
                args = dependency_args(run, condition, params)
                states = ",".join(condition.get("states") or ["success"])
                label = (f"{condition.get('job_id')} "
                         + " ".join(f"{k}={v}" for k, v in args.items()) + f"  [{states}]")
                deps.append((label, ("dep", condition.get("job_id"), args)))
        if deps == self._deps:
            return
        had = bool(self._deps)
        self._deps = deps
        if had != bool(deps):
            self.refresh_bindings()
        options = self.query_one("#deps", OptionList)
        options.clear_options()
        options.add_options([Option(label) for label, _ in deps])
        options.display = bool(deps)
        self.query_one("#deps-title", Label).display = bool(deps)

    def _reruns(self) -> list[str]:
        """The runs made by rerunning this one, oldest first."""
        reruns = [r for r in self.apsis.model.runs.values() if r.get("rerun_of") == self.run_id]
        return [str(r["run_id"]) for r in sorted(
            reruns, key=lambda r: (len(str(r["run_id"])), str(r["run_id"])))]

    def _render_log(self) -> None:
        text = Text()
        for entry in self.log_entries:
            when = parse_time(entry.get("ts"))
            stamp = f"{datetime.fromtimestamp(when):%m-%d %H:%M:%S}" if when else "?"
            text.append(f"{stamp}  ", style="dim")
            state = entry.get("state") or ""
            text.append(f"{state:<10}", style=STATE_LOOKS[state].style if state in STATE_LOOKS else "")
            text.append(f" {entry.get('message') or ''}\n")
        self.query_one("#log-text", Static).update(text if self.log_entries else "no log yet")

    def _render_json(self) -> None:
        source = json.dumps(self.run_data, indent=2, sort_keys=False)
        self.query_one("#json-text", Static).update(
            Syntax(source, "json", theme="ansi_dark", word_wrap=True, background_color="default"))

    # -- actions -----------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#deps")
    def _jump(self, event: OptionList.OptionSelected) -> None:
        self._open_dep(event.option_index)

    def action_dependency(self) -> None:
        """One key to the run a dependency waits for (or the rerun): opened at once
        when there is one, else the list on Details to pick from."""
        if len(self._deps) == 1:
            self._open_dep(0)
        elif self._deps:
            self.query_one("#run-tabs", TabbedContent).active = "details"
            self.query_one("#deps", OptionList).focus()

    def _open_dep(self, index: int) -> None:
        _, target = self._deps[index]
        if target[0] == "run":
            self.apsis.open_run(target[1])
        else:
            self.find_dependency(target[1], target[2])

    @work(group="run-jump")
    async def find_dependency(self, job_id: str, args: dict[str, str]) -> None:
        from apsis.client import ApsisError

        try:
            page = await self.apsis.client.runs(job_id=job_id, args=args, limit=1)
        except ApsisError as exc:
            self.notify(exc.message, severity="error")
            return
        if page["runs"]:
            self.apsis.open_run(page["runs"][0]["run_id"])
        else:
            shown = " ".join(f"{k}={v}" for k, v in args.items())
            self.notify(f"no run of {job_id} {shown} yet", severity="warning")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab
        self._focus_tab(tab)

    def _focus_tab(self, tab: str) -> None:
        focus: dict[str, Callable[[], Any]] = {
            "output": lambda: self.query_one("#output-pane", OutputPane).view,
            "details": lambda: self.query_one("#details-scroll"),
        }
        if tab in focus:
            focus[tab]().focus()

    def action_cycle_output(self) -> None:
        """Show the run's next output (stdout, stderr, ...), streamed from its start."""
        if len(self.output_ids) < 2:
            return
        index = self.output_ids.index(self.output_id) if self.output_id in self.output_ids else -1
        self.output_id = self.output_ids[(index + 1) % len(self.output_ids)]
        self._show_output_choice()
        self.action_tab("output")
        if self.output_started:
            self.stream_output()  # exclusive: the stream of the previous output stops

    def action_toggle_json(self) -> None:
        tabs = self.query_one("#run-tabs", TabbedContent)
        if tabs.active == "json":
            self.action_tab(self._before_json)
        else:
            self._before_json = tabs.active or "details"
            self.action_tab("json")

    def action_operation(self, operation: str) -> None:
        self.apsis.request_operation(self.run_id, operation)

    def show_rerun(self, run_id: str, rerun_id: str) -> None:
        """This run was rerun: open the new run (Esc comes back here)."""
        if run_id == self.run_id:
            self.apsis.open_run(rerun_id)


def _indent(text: str, prefix: str = "  ") -> str:
    return "".join(prefix + line for line in text.rstrip("\n").splitlines(keepends=True))
