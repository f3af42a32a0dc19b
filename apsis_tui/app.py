"""The Apsis TUI application: one client, one event stream, many screens.

The App owns the connection. It loads runs page by page (newest first) and follows
the event stream from the first page's ``seq``, so nothing is missed or repeated;
screens read ``app.runs`` and subscribe to the App's signals for changes. All
network work happens in Textual workers, one exclusive group per kind of work.

    run_tui("http://127.0.0.1:5000", token=None)
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.signal import Signal
from textual.worker import get_current_worker

from apsis_tui.messages import ConnectionChanged, ConnectionState, JobsChanged, RunLogged
from apsis_tui.runstore import ACTIVE_STATES, parse_time
from apsis_tui.state import TuiState

PAGE_SIZE = 1000
MAX_RUNS = 100_000
HEALTH_INTERVAL = 2.0
FAILED_WINDOW = 3600.0  # the title counts failures of the last hour
HANGUP_GRACE = 3.0  # seconds to exit cleanly after SIGHUP before exiting hard
FAILED_STATES = frozenset({"failure", "error"})

# What a run keeps in memory for the tables; the Run screen fetches the full run.
# 100 000 full runs (programs, conditions, actions) would cost hundreds of MB.
SUMMARY_KEYS = (
    "run_id", "job_id", "args", "state", "labels", "times", "message", "rerun_of",
    "attempt", "exit_code", "signal", "ad_hoc", "expected",
)


def summarize(run: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a run the tables and the title need."""
    return {key: run[key] for key in SUMMARY_KEYS if key in run}


def make_clients(url: str, token: str | None) -> tuple[Any, Any, Any]:
    """Three clients: requests (give up after 10 s), events (retry forever) and the
    health probe (fail fast, so the indicator turns red within seconds)."""
    from apsis.client import Client

    return (Client(url, token, retry_for=10.0), Client(url, token, retry_for=None),
            Client(url, token, timeout=3.0, retry_for=0.0))


REFREEZE_AFTER = 20_000  # runs changed by events before they are frozen out of the GC too


class ApsisApp(App[int]):
    """Runs, Run, Jobs, Job and Timeline screens over one daemon's event stream."""

    HELP_NAME = "Everywhere"  # the section title in the keys help

    CSS_PATH = "app.tcss"
    TITLE = "Apsis"
    ENABLE_COMMAND_PALETTE = False
    # Each mode keeps its own stack: a Run opened from the Runs screen is still there
    # after a look at the Timeline.
    MODES: ClassVar[dict[str, Any]] = {
        "runs": lambda: _screen("runs", "RunsScreen"),
        "jobs": lambda: _screen("jobs", "JobsScreen"),
        "timeline": lambda: _screen("timeline", "TimelineScreen"),
    }
    DEFAULT_MODE = "runs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys", key_display="?"),
        Binding("1", "switch_mode('runs')", "Runs", show=False),
        Binding("2", "switch_mode('jobs')", "Jobs", show=False),
        Binding("3", "switch_mode('timeline')", "Timeline", show=False),
        Binding("c", "new_run", "New run"),
    ]

    def __init__(
        self,
        url: str = "",
        token: str | None = None,
        *,
        client: Any = None,
        events_client: Any = None,
        health_client: Any = None,
        clock: Callable[[], float] = time.time,
        state: TuiState | None = None,
        max_runs: int = MAX_RUNS,
        page_size: int = PAGE_SIZE,
        health_interval: float = HEALTH_INTERVAL,
        ansi: bool | None = None,
    ) -> None:
        """``client`` (and the other two) replace the real clients in tests;
        ``clock`` is the time every screen shows (frozen in snapshot tests)."""
        super().__init__()
        if client is None:
            client, events_client, health_client = make_clients(url, token)
        self.url = url or getattr(client, "url", "")
        self.client = client
        self.events_client = events_client or client
        self.health_client = health_client or client
        self.clock = clock
        self.tui_state = state if state is not None else TuiState()
        self.max_runs = max_runs
        self.page_size = page_size
        self.health_interval = health_interval
        self._ansi = ansi
        # run id -> summary: everything loaded, unfiltered (the Runs table filters).
        self.runs: dict[str, dict[str, Any]] = {}
        self._run_seq: dict[str, int] = {}  # the seq of the event that last set a run
        self.jobs: dict[str, dict[str, Any]] = {}
        self.connection: ConnectionState = "connecting"
        self.connection_detail = ""
        # The indicator is live only when both agree: the event socket is open (as the
        # client reports it) and /alive answers. Either one alone can be wrong: the
        # probe answers while the socket is still reconnecting, and a half-open socket
        # looks open until its ping times out.
        self._stream_state = "connecting"
        self._stream_error = ""
        self._probe_error: str | None = None
        self.version: str | None = None
        self.last_seq: int | None = None
        self.loaded = False  # the first page is in
        self._unfrozen = 0  # runs stored since the GC last froze them
        self._active: set[str] = set()
        self._failed: dict[str, float] = {}  # run id -> when it failed
        self._title_shown = ""
        self.runs_signal: Signal[list[dict[str, Any]]] = Signal(self, "runs")
        self.log_signal: Signal[RunLogged] = Signal(self, "run-log")
        self.connection_signal: Signal[ConnectionChanged] = Signal(self, "connection")
        self.jobs_signal: Signal[JobsChanged] = Signal(self, "jobs")
        self.reset_signal: Signal[None] = Signal(self, "reset")

    # -- screens -------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._ansi or (self._ansi is None and _sixteen_colours()):
            self.theme = "ansi-dark"
        self._install_hangup()
        self.set_interval(1.0, self._update_title)
        self.load_runs()
        self.load_jobs()
        self.watch_health()

    def action_help(self) -> None:
        from apsis_tui.screens.dialogs import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.screen))

    def action_new_run(self, job_id: str | None = None) -> None:
        from apsis_tui.screens.dialogs import NewRunDialog

        self.push_screen(NewRunDialog(job_id))

    def open_run(self, run_id: str) -> None:
        from apsis_tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_job(self, job_id: str) -> None:
        from apsis_tui.screens.job import JobScreen

        self.push_screen(JobScreen(job_id))

    def filter_runs(self, term: str) -> None:
        """Show the Runs screen with a term added to its filter."""
        from apsis_tui.screens.runs import RunsScreen

        if self.current_mode != "runs":
            self.switch_mode("runs")
        while len(self.screen_stack) > 1:
            self.pop_screen()
        screen = self.screen_stack[0]
        if isinstance(screen, RunsScreen):
            screen.add_filter_term(term)

    # -- loading and following -------------------------------------------------------

    @work(exclusive=True, group="runs")
    async def load_runs(self) -> None:
        """Newest first, page by page; the stream follows from the first page's seq."""
        from apsis.client import ApsisError

        worker = get_current_worker()
        try:
            page = await self.client.runs(limit=self.page_size)
        except ApsisError as exc:
            self._set_connection("down", str(exc))
            await asyncio.sleep(2.0)
            if not worker.is_cancelled:
                self.call_later(self.load_runs)
            return
        self.follow_events(page["seq"])
        self.apply_page(page["runs"], page["seq"])
        self.loaded = True
        loaded = len(page["runs"])
        cursor = page.get("cursor")

        def fetch(cursor: str | None) -> asyncio.Future[dict[str, Any]] | None:
            if not cursor or loaded >= self.max_runs:
                return None
            return asyncio.ensure_future(self.client.runs(limit=self.page_size, cursor=cursor))

        next_page = fetch(cursor)
        try:
            while next_page is not None and not worker.is_cancelled:
                try:
                    page = await next_page
                except ApsisError:
                    await asyncio.sleep(2.0)  # the indicator says why; try the page again
                    next_page = fetch(cursor)
                    continue
                loaded += len(page["runs"])
                cursor = page.get("cursor")
                # Ask for the next page first: the daemon reads it while this one is applied.
                next_page = fetch(cursor)
                self.apply_page(page["runs"], page["seq"])
                await asyncio.sleep(0)  # let the screen paint and keys through between pages
        finally:
            if next_page is not None:
                next_page.cancel()
        if not worker.is_cancelled:
            self._freeze_runs()

    def apply_page(self, runs: Iterable[Mapping[str, Any]], seq: int) -> None:
        """Runs as of event ``seq``; a run an event changed later keeps that change."""
        batch = []
        for run in runs:
            run_id = run["run_id"]
            if self._run_seq.get(run_id, -1) > seq:
                continue
            batch.append(self._store_run(summarize(run)))
        if batch:
            self.runs_signal.publish(batch)

    def apply_run(self, run: Mapping[str, Any], seq: int | None = None) -> dict[str, Any]:
        """One run's new summary (from an event, or an operation's answer)."""
        run_id = run["run_id"]
        if seq is not None:
            self._run_seq[run_id] = seq
        merged = self._store_run({**self.runs.get(run_id, {}), **summarize(run)})
        self.runs_signal.publish([merged])
        self._unfrozen += 1
        if self._unfrozen >= REFREEZE_AFTER:  # a dashboard left open for days
            self._freeze_runs()
        return merged

    def _freeze_runs(self) -> None:
        """Moves what exists now (the runs loaded or changed) out of the cyclic GC's reach.

        They live as long as the app, yet every full collection walked them all: a pause
        of ~90 ms per 20 000 runs, felt as a stuck cursor. Refcounting still frees them.
        """
        gc.collect(1)  # young garbage first, so little is frozen that a collection would free
        gc.freeze()
        self._unfrozen = 0

    def _store_run(self, run: dict[str, Any]) -> dict[str, Any]:
        run_id = run["run_id"]
        self.runs[run_id] = run
        state = run.get("state")
        if state in ACTIVE_STATES:
            self._active.add(run_id)
        else:
            self._active.discard(run_id)
        if state in FAILED_STATES:
            when = parse_time((run.get("times") or {}).get(state))
            self._failed[run_id] = when if when is not None else self.clock()
        else:
            self._failed.pop(run_id, None)
        return run

    @work(exclusive=True, group="events")
    async def follow_events(self, since: int) -> None:
        """Apply every event after ``since``; the client reconnects and resumes."""
        from apsis.client import ApsisError

        self.last_seq = since
        self._stream_error = ""
        try:
            async for event in self.events_client.events(since=since,
                                                         on_state=self._stream_changed):
                self.handle_event(event)
                if event.get("type") == "reset":
                    return
        except ApsisError as exc:  # refused (401/403): retrying cannot help
            self._stream_error = str(exc)
            self._stream_changed("disconnected")

    def _stream_changed(self, state: str) -> None:
        """The client's report on the event socket: connecting, live or disconnected."""
        self._stream_state = state
        self._show_connection()

    def _show_connection(self) -> None:
        if self._probe_error is not None:
            self._set_connection("down", self._probe_error)
        elif self._stream_state == "disconnected":
            self._set_connection("down", self._stream_error or "the event stream is reconnecting")
        elif self._stream_state == "live":
            self._set_connection("live")
        else:
            self._set_connection("connecting")

    def handle_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        seq = event.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        if kind == "run_transition":
            self.apply_run(event["run"], seq if isinstance(seq, int) else None)
        elif kind == "run_log":
            self.log_signal.publish(RunLogged(event["run_id"], event.get("entry") or {}))
        elif kind in ("job_added", "job_changed", "job_removed", "jobs_reloaded"):
            job = event.get("job") or {}
            job_id = job.get("job_id")
            if kind == "job_removed" and job_id:
                self.jobs.pop(job_id, None)
            elif job_id:
                self.jobs[job_id] = job
            self.jobs_signal.publish(JobsChanged(job_id))
            if kind == "jobs_reloaded":
                self.load_jobs()
        elif kind == "reset":
            self.notify("The daemon no longer has the events since we last saw it: reloading.")
            self.runs.clear()
            self._run_seq.clear()
            self._active.clear()
            self._failed.clear()
            self.reset_signal.publish(None)
            self.load_runs()

    @work(exclusive=True, group="jobs")
    async def load_jobs(self) -> None:
        from apsis.client import ApsisError

        try:
            jobs = await self.client.jobs()
        except ApsisError:
            return
        self.jobs = {job["job_id"]: job for job in jobs}
        self.jobs_signal.publish(JobsChanged(None))

    @work(exclusive=True, group="health")
    async def watch_health(self) -> None:
        """Probe ``/alive`` every few seconds: the daemon's version, and a second opinion
        for the indicator (the event socket's state is the first)."""
        from apsis.client import ApsisError

        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                alive = await self.health_client.alive()
            except ApsisError as exc:
                self._probe_error = exc.message
            else:
                self.version = alive.get("version") or self.version
                self._probe_error = None
            self._show_connection()
            await asyncio.sleep(self.health_interval)

    def _set_connection(self, state: ConnectionState, detail: str = "") -> None:
        changed = (state, detail) != (self.connection, self.connection_detail)
        if state == "down" and self.connection != "down":
            self._down_since = self.clock()
        self.connection = state
        self.connection_detail = detail
        if changed:
            self.connection_signal.publish(ConnectionChanged(state, self.version, detail))

    @property
    def down_since(self) -> float | None:
        return getattr(self, "_down_since", None) if self.connection == "down" else None

    # -- counts and the terminal's title ----------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(runs running now, runs that failed in the last hour)."""
        horizon = self.clock() - FAILED_WINDOW
        for run_id in [r for r, when in self._failed.items() if when < horizon]:
            del self._failed[run_id]
        return len(self._active), len(self._failed)

    def title_text(self) -> str:
        running, failed = self.counts()
        mark = "" if self.connection == "live" else " (disconnected)"
        return f"Apsis: {running} running, {failed} failed/1h{mark}"

    def _update_title(self) -> None:
        title = self.title_text()
        if title == self._title_shown:
            return
        self._title_shown = title
        self.title = title
        # Textual has no API for the terminal's window title: send OSC 2 through the
        # driver, so it is ordered with the rest of the output.
        driver = self._driver
        if driver is not None and not self.is_headless:
            clean = "".join(c for c in title if c.isprintable())
            driver.write(f"\x1b]2;{clean}\x07")

    # -- operations ------------------------------------------------------------------

    def request_operation(self, run_id: str, operation: str, value: str | None = None) -> None:
        """Ask for confirmation, then apply an operation (skip, start, stop, rerun,
        mark STATE, signal SIG); the result or the error comes back as a notification."""
        from apsis_tui.screens.dialogs import ConfirmDialog, PickDialog
        from apsis_tui.screens.operations import (
            MARK_STATES,
            SIGNALS,
            describe,
            refusal,
        )

        run = self.runs.get(run_id) or {"run_id": run_id}
        why_not = refusal(run, operation)
        if why_not:
            self.notify(why_not, severity="warning")
            return
        if operation in ("mark", "signal") and value is None:
            choices = MARK_STATES if operation == "mark" else SIGNALS
            options = [c for c in choices if c != run.get("state")]
            title = f"Mark {run_id} as" if operation == "mark" else f"Send to {run_id}"

            def picked(choice: str | None) -> None:
                if choice:
                    self.request_operation(run_id, operation, choice)

            self.push_screen(PickDialog(title, [(c, c) for c in options]), picked)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.do_operation(run_id, operation, value)

        self.push_screen(ConfirmDialog(describe(run, operation, value)), confirmed)

    @work(group="operations")
    async def do_operation(self, run_id: str, operation: str, value: str | None) -> None:
        from apsis.client import ApsisError

        client = self.client
        try:
            if operation == "mark":
                result = await client.mark(run_id, value)
            elif operation == "signal":
                result = await client.signal(run_id, value)
            else:
                result = await getattr(client, operation)(run_id)
        except ApsisError as exc:
            self.notify(f"{operation} {run_id}: {exc.message}", title="Refused",
                        severity="error", timeout=8)
            return
        if isinstance(result, dict) and "run_id" in result:
            if operation == "rerun":
                self.apply_run(result)
                self.notify(f"{run_id} rerun as {result['run_id']}", title="Rerun")
                return
            self.apply_run(result)
            self.notify(f"{run_id} is now {result.get('state', '?')}", title=operation.title())
        else:
            self.notify(f"{operation} {run_id}: done", title=operation.title())

    # -- terminal going away --------------------------------------------------------

    def _install_hangup(self) -> None:
        """SIGHUP (a dropped ssh session) exits; so does SIGTERM. If a clean exit
        cannot write to the dead terminal and hangs, a timer ends the process."""
        if self.is_headless or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_hangup, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _on_hangup(self, signum: int) -> None:
        code = 128 + signum
        timer = threading.Timer(HANGUP_GRACE, os._exit, (code,))
        timer.daemon = True
        timer.start()
        self.exit(code)

    async def on_unmount(self) -> None:
        for client in {id(c): c for c in (self.client, self.events_client,
                                          self.health_client)}.values():
            close = getattr(client, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing must not mask the exit
                    pass


def _screen(module: str, name: str) -> Any:
    """A mode's base screen, imported when first shown (start-up stays quick)."""
    import importlib

    return getattr(importlib.import_module(f"apsis_tui.screens.{module}"), name)()


def _sixteen_colours() -> bool:
    """Whether the terminal looks like 16 colours only: then use the ANSI theme."""
    if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return False
    term = os.environ.get("TERM", "")
    return not any(tag in term for tag in ("256", "truecolor", "direct", "kitty", "alacritty"))


def run_tui(url: str, token: str | None = None) -> int:
    """Run the TUI on the daemon at ``url`` until the user quits (what `apsis tui` calls)."""
    app = ApsisApp(url, token)
    code = app.run() or 0
    if code > 128:  # hung up: leave no process behind, whatever is still running
        sys.stdout.flush()
        os._exit(code)
    return code
