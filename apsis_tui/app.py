"""The Apsis TUI application: one client, one event stream, many screens.

The App owns the connection. It loads runs page by page (newest first) and follows
the event stream from the first page's ``seq``, so nothing is missed or repeated,
feeding what arrives to ``app.model`` (`apsis_tui.model`), which the screens read and
observe. All network work happens in Textual workers, one exclusive group per kind
of work.

    run_tui("http://127.0.0.1:5000", token=None)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import get_current_worker

from apsis_tui.model import TuiModel
from apsis_tui.state import TuiState

PAGE_SIZE = 1000  # runs a page: each decoded in a few ms, so keys get through between pages
PAGES_PER_REQUEST = 20  # after the first page, pages come this many to a request (GET ?pages=)
MAX_RUNS = 100_000
HEALTH_INTERVAL = 2.0
HANGUP_GRACE = 3.0  # seconds to exit cleanly after SIGHUP before exiting hard
TYPING = 0.5  # seconds after a key during which the user counts as typing
PAGE_WHILE_TYPING = 0.05  # the load takes a page this often while the user types


def make_clients(url: str, token: str | None) -> tuple[Any, Any, Any]:
    """Three clients: requests (give up after 10 s), events (retry forever) and the
    health probe (fail fast, so the indicator turns red within seconds). They share
    the daemons of the URL list: when one moves to another daemon, all three do, so
    the header's daemon is the one the events come from."""
    from apsis.client import Client

    client = Client(url or None, token, retry_for=10.0)
    return (client, client.sibling(retry_for=None),
            client.sibling(timeout=3.0, retry_for=0.0))



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
        # A program's ANSI colours stay the terminal's own: converted through the
        # theme's palette, red and magenta came out as one pink and blue as purple.
        super().__init__(ansi_color=True)
        if client is None:
            client, events_client, health_client = make_clients(url, token)
        self.url = url or getattr(client, "url", "")
        # The daemon /alive last answered from, and its role: leader, standby, or
        # single (alone on its database, epoch 0).
        self.daemon_url: str = getattr(client, "url", "") or self.url
        self.daemon_role: str | None = None
        self.client = client
        self.events_client = events_client or client
        self.health_client = health_client or client
        self.clock = clock
        self.tui_state = state if state is not None else TuiState()
        self.max_runs = max_runs
        self.page_size = page_size
        self.health_interval = health_interval
        self._ansi = ansi
        self.model = TuiModel(clock)
        self._title_shown = ""
        self.key_pressed_at: float | None = None  # (monotonic) the user's last key

    # -- screens -------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._ansi or (self._ansi is None and _sixteen_colours()):
            self.theme = "ansi-dark"
        self._install_hangup()
        self.set_interval(1.0, self._update_title)
        self.load_runs()
        self.load_jobs()
        self.watch_health()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.key_pressed_at = time.monotonic()  # before any screen or binding sees it
        await super().on_event(event)

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
        """Newest first, page by page; the stream follows from the first page's seq.

        Pages of summaries (what the tables show, a fraction of the bytes), small enough
        that decoding one never holds the screen up; after the first, many pages to a
        request, each applied as soon as it has arrived, so the daemon writes the next
        ones meanwhile."""
        from apsis.client import ApsisError

        worker = get_current_worker()
        try:
            page = await self.client.runs(limit=self.page_size, summary=True)
        except ApsisError as exc:
            self.model.unreachable(str(exc))
            await asyncio.sleep(2.0)
            if not worker.is_cancelled:
                self.call_later(self.load_runs)
            return
        self.follow_events(page["seq"])
        self.model.apply_page(page["runs"], page["seq"])
        loaded = len(page["runs"])
        cursor = page.get("cursor")
        with self.model.loading():
            while cursor and loaded < self.max_runs and not worker.is_cancelled:
                pages = min(PAGES_PER_REQUEST, -(-(self.max_runs - loaded) // self.page_size))
                lines = self.client.run_page_lines(pages, limit=self.page_size, cursor=cursor,
                                                   summary=True)
                try:
                    async with contextlib.aclosing(lines):
                        async for text in lines:
                            page = json.loads(text)
                            # A page is ~3 ms to decode and as much to merge: a key pressed
                            # meanwhile goes in between (and its frame, while the user types).
                            await self._give_way_to_keys()
                            cursor = page.get("cursor")
                            loaded += len(page["runs"])
                            # Merged now, shown with the pages before it a few times a
                            # second (the Runs screen stages them).
                            self.model.apply_page(page["runs"], page["seq"])
                            # The runs live as long as the app: out of the GC's reach now,
                            # with what else was made since the last page collected (the GC
                            # is paused): a page's worth at a time, ~1 ms.
                            self.model.freeze()
                except ApsisError as exc:
                    if exc.status is not None and 400 <= exc.status < 500:
                        # Refused (a token revoked...): asking again cannot help.
                        self.notify(f"Loading runs: {exc.message}", severity="error")
                        return
                    await asyncio.sleep(2.0)  # the indicator says why; go on from the cursor

    async def _give_way_to_keys(self) -> None:
        """A key that came meanwhile is handled now; while the user types, a page at most
        every PAGE_WHILE_TYPING seconds. Between pages the process sleeps, and the system
        runs a sleeping process the moment a key wakes it; one busy with pages waits for
        its turn on a shared machine (keys waited for 50-100 ms on two busy cores). The
        load goes on at full speed once the user stops."""
        await asyncio.sleep(0)
        pressed = self.key_pressed_at
        if pressed is not None and time.monotonic() - pressed < TYPING:
            await asyncio.sleep(PAGE_WHILE_TYPING)

    @work(exclusive=True, group="events")
    async def follow_events(self, since: int) -> None:
        """Apply every event after ``since``; the client reconnects and resumes."""
        from apsis.client import ApsisError

        model = self.model
        model.stream_started(since)
        try:
            async for event in self.events_client.events(since=since,
                                                         on_state=model.stream_changed):
                model.apply_event(event)
                kind = event.get("type")
                if kind == "jobs_reloaded":
                    self.load_jobs()
                elif kind == "reset":
                    self.notify("The daemon no longer has the events since we last saw it: "
                                "reloading.")
                    self.load_runs()
                    return
        except ApsisError as exc:  # refused (401/403): retrying cannot help
            model.stream_changed("disconnected", str(exc))

    @work(exclusive=True, group="jobs")
    async def load_jobs(self) -> None:
        from apsis.client import ApsisError

        try:
            jobs = await self.client.jobs()
        except ApsisError:
            return
        self.model.set_jobs(jobs)

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
                self.model.probe_failed(exc.message)
            else:
                self.daemon_url = getattr(self.health_client, "url", "") or self.daemon_url
                self.daemon_role = role_of(alive)
                self.model.probe_answered(alive.get("version"))
            await asyncio.sleep(self.health_interval)

    # -- the terminal's title -----------------------------------------------------------

    def title_text(self) -> str:
        running, failed = self.model.counts()
        mark = "" if self.model.connection == "live" else " (disconnected)"
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

        run = self.model.runs.get(run_id) or {"run_id": run_id}
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
            self.model.apply_run(result)
            if operation == "rerun":
                self.notify(f"{run_id} rerun as {result['run_id']}", title="Rerun")
                # Go there: the screen that asked opens the new run or puts its cursor on it.
                show = getattr(self.screen, "show_rerun", None)
                if show is not None:
                    show(run_id, result["run_id"])
                return
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


def role_of(alive: dict[str, Any]) -> str | None:
    """`leader`, `standby`, or `single` for a daemon alone on its database (SQLite, or
    PostgreSQL without election: epoch 0); None from a daemon too old to say."""
    role = alive.get("role")
    if role == "leader" and alive.get("epoch") == 0:
        return "single"
    return role if isinstance(role, str) else None


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
