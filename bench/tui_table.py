"""The Runs screen with 100 000 runs, headless: first paint and keypress latency.

Run: `.venv/bin/python -m bench --quick --only tui_table`. Two levels:

- The app (SPEC §1.13 `tui_first_paint_s_100k`, `tui_keypress_p99_ms`,
  `tui_loaded_s_100k`): the real ApsisApp against a real daemon subprocess whose
  database holds 100 000 runs (20 000 with --quick): time from app start to the first
  rows painted and to every run loaded (with the CPU seconds the app used for that),
  and key to repainted cursor while about 50 run transitions a second arrive from
  no-op runs created through the API by a background thread; then a second app, its
  keys pressed while it loads (`tui_load_keypress_p99_ms`). A key's time ends when the
  line that shows the cursor on its new run is drawn (neither when a poll of ours
  comes round, nor at a frame drawn before the key was handled).
- The widget (`tui_table_*`): RunTable over an in-memory store, no network: the
  times a user waits for once the runs have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.strip import Strip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apsis_tui.widgets.run_table import RunTable  # noqa: E402

NOW = 1_700_000_000.0
STATES = ("success", "success", "success", "failure", "error", "skipped")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def make_runs(count: int, future: int = 100) -> list[dict[str, Any]]:
    """Runs one minute apart, shaped like the API's, ``future`` of them after NOW."""
    runs = []
    start = NOW - (count - future) * 60
    for i in range(count):
        schedule = start + i * 60
        state = "scheduled" if schedule >= NOW else STATES[i % len(STATES)]
        times = {"schedule": iso(schedule)}
        if state in ("success", "failure", "error"):
            times |= {"running": iso(schedule + 1), state: iso(schedule + 30 + i % 90)}
        runs.append(
            {
                "run_id": f"r{i + 1}",
                "job_id": f"group{i % 7}/job{i % 120}",
                "args": {"date": f"2023-11-{1 + i % 28:02d}", "region": ("eu", "us")[i % 2]},
                "state": state,
                "labels": [],
                "times": times,
            }
        )
    return runs


def cursor_drawn(table: RunTable, y: int) -> str | None:
    """The run the cursor is on, if line ``y`` just drawn is the cursor's line."""
    row = table.cursor_row
    if y > 0 and row >= 0 and table.scroll_offset.y + y - 1 == table._row_to_line(row):
        return table.cursor_run_id
    return None


class TimedTable(RunTable):
    """Records when a row was first drawn (the moment the user sees data) and when
    the cursor was last drawn, on which run."""

    first_row_at: float | None = None
    cursor_at: tuple[str | None, float] = (None, 0.0)

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        now = time.perf_counter()
        if self.first_row_at is None and y > 0 and len(self.store):
            self.first_row_at = now
        if (run_id := cursor_drawn(self, y)) is not None:
            self.cursor_at = (run_id, now)
        return strip


class BenchApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TimedTable(clock=lambda: NOW)


async def measure_bulk(runs: list[dict[str, Any]]) -> dict[str, float]:
    """All runs at once (a screen opened on a cached result)."""
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(TimedTable)
        start = time.perf_counter()
        table.load(runs)
        await pilot.pause()
        assert table.first_row_at is not None
        first_paint = table.first_row_at - start
        refilter = []
        for text in ("state:failure", "job:job1", "2023-11-0", ""):
            t = time.perf_counter()
            table.set_filter(text)
            refilter.append(time.perf_counter() - t)
        return {"first_paint": first_paint, "refilter_max": max(refilter)}


async def measure_paged(runs: list[dict[str, Any]], page: int = 1000) -> dict[str, float]:
    """Pages arriving as from ``GET /runs`` (newest first), coalesced by the table."""
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(TimedTable)
        newest_first = runs[::-1]
        start = time.perf_counter()
        table.load(newest_first[:page])
        await pilot.pause()
        assert table.first_row_at is not None
        first_page = table.first_row_at - start
        for offset in range(page, len(newest_first), page):
            table.apply_runs(newest_first[offset : offset + page])
            await asyncio.sleep(0)  # let the event loop breathe, as the network would
        while table.pending_count:
            await asyncio.sleep(0.01)
        await pilot.pause()
        loaded = time.perf_counter() - start
        assert table.row_count == len(runs)
        return {"first_page": first_page, "loaded": loaded}


async def measure_keypress(runs: list[dict[str, Any]], presses: int) -> list[float]:
    """Key event to repainted cursor, while 50 transitions a second arrive."""
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(TimedTable)
        table.load(runs)
        await pilot.pause()
        table.focus()
        stop = asyncio.Event()

        async def transitions() -> None:
            number = 0
            while not stop.is_set():
                for _ in range(5):
                    run = dict(runs[-200 + number % 100])
                    run["state"] = ("running", "success")[number % 2]
                    table.apply_run(run)
                    number += 1
                await asyncio.sleep(0.1)

        feeder = asyncio.create_task(transitions())
        latencies = []
        for i in range(presses):
            # Pilot.press waits for idle (~40 ms of its own); post the key as the
            # driver does and wait for the repaint that shows the moved cursor.
            key = "up" if (i // 20) % 2 else "down"
            run_id = table.cursor_run_id
            start = time.perf_counter()
            app.post_message(events.Key(key, None))
            await wait_for(lambda: table.cursor_at[0] not in (None, run_id)  # noqa: B023
                           and table.cursor_at[1] > start, 5, "the cursor to move")  # noqa: B023
            latencies.append(table.cursor_at[1] - start)
        stop.set()
        await feeder
        return latencies


# -- the app against a daemon ----------------------------------------------------------

TRANSITIONS_PER_S = 50.0
LOADS_WITH_KEYS = 2  # loads whose keys make tui_load_keypress_p99_ms (~150 keys each)
NOOP_JOBS = {"noop": "program: {type: no-op}\n"}


class PaintClock:
    """When any RunTable first drew a row, and when it last drew its cursor, on which
    run: the app's own table is timed without changing the app."""

    def __init__(self) -> None:
        self.first_row_at: float | None = None
        self.cursor_at: tuple[str | None, float] = (None, 0.0)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = RunTable.render_line
        clock = self

        def render_line(table: RunTable, y: int) -> Strip:
            strip = original(table, y)
            now = time.perf_counter()
            if clock.first_row_at is None and y > 0 and len(table.store):
                clock.first_row_at = now
            if (run_id := cursor_drawn(table, y)) is not None:
                clock.cursor_at = (run_id, now)
            return strip

        RunTable.render_line = render_line  # type: ignore[method-assign]
        try:
            yield
        finally:
            RunTable.render_line = original  # type: ignore[method-assign]


class RunCreator(threading.Thread):
    """POST /runs of the no-op job at a steady rate, from a thread, as other users
    of the daemon would (the TUI process does none of this work itself)."""

    def __init__(self, api: str, per_second: float) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.interval = 1.0 / per_second
        self.halt = threading.Event()
        self.created = 0

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.api, timeout=30) as http:
            due = time.monotonic()
            while not self.halt.is_set():
                http.post("/runs", json={"job_id": "noop"}).raise_for_status()
                self.created += 1
                due = max(due + self.interval, time.monotonic() - self.interval)
                self.halt.wait(max(0.0, due - time.monotonic()))


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def timed_press(app: App[Any], table: RunTable, clock: PaintClock, key: str) -> float:
    """Seconds from the key event to the repaint that shows the cursor on another run
    (its row number changes also when a load puts rows above it)."""
    run_id = table.cursor_run_id
    start = time.perf_counter()
    # As the driver does; Pilot.press would add its own wait for idle.
    app.post_message(events.Key(key, None))
    await wait_for(
        lambda: clock.cursor_at[0] not in (None, run_id) and clock.cursor_at[1] > start, 5,
        "the cursor to move",
    )
    return clock.cursor_at[1] - start


def loading(app: App[Any], table: RunTable, count: int) -> bool:
    """Whether the app is still loading its runs (or showing the last of them)."""
    busy = any(w.group == "runs" and not w.is_finished for w in app.workers)
    return busy or table.row_count < count or bool(table.pending_count)


async def keys_while_loading(url: str, state_path: Path, count: int) -> list[float]:
    """Key to repainted cursor, pressed from the first rows painted until every run is in."""
    from apsis_tui.app import ApsisApp
    from apsis_tui.state import TuiState

    clock = PaintClock()
    with clock.installed():
        app = ApsisApp(url, state=TuiState(state_path), ansi=False)
        async with app.run_test(size=(120, 40)):
            await wait_for(lambda: clock.first_row_at is not None, 120, "the first rows")
            table = app.screen_stack[0].query_one(RunTable)
            table.focus()
            latencies = []
            while loading(app, table, count):
                # Up first: the cursor starts at now, the newest runs, at the bottom.
                key = "down" if (len(latencies) // 20) % 2 else "up"
                latencies.append(await timed_press(app, table, clock, key))
                await asyncio.sleep(0.02)  # a fast typist, not a flood
    return latencies


async def drive_app(url: str, state_path: Path, count: int, presses: int) -> dict[str, Any]:
    """First paint, full load, and keypresses under transitions, on the real app."""
    from apsis_tui.app import ApsisApp
    from apsis_tui.state import TuiState

    clock = PaintClock()
    transitions: dict[str, int] = {}  # run id -> transitions seen

    with clock.installed():
        start = time.perf_counter()
        cpu_start = time.process_time()
        app = ApsisApp(url, state=TuiState(state_path), ansi=False)
        original_handle = app.model.apply_event

        def counting(event: Any) -> None:
            if event.get("type") == "run_transition":
                run_id = event["run"]["run_id"]
                transitions[run_id] = transitions.get(run_id, 0) + 1
            original_handle(event)

        app.model.apply_event = counting  # type: ignore[method-assign]
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(lambda: clock.first_row_at is not None, 120, "the first rows")
            assert clock.first_row_at is not None
            first_paint = clock.first_row_at - start
            table = app.screen_stack[0].query_one(RunTable)

            await wait_for(lambda: not loading(app, table, count), 600, "every run to load")
            all_loaded = time.perf_counter() - start
            load_cpu = time.process_time() - cpu_start

            # How many transitions one no-op run makes, to create runs at the rate that
            # gives TRANSITIONS_PER_S.
            sample = await app.client.create_runs("noop", count=5)
            ids = [r["run_id"] for r in sample]
            await wait_for(
                lambda: all(app.model.runs.get(i, {}).get("state") == "success" for i in ids),
                60,
                "the sample runs",
            )
            per_run = sum(transitions.get(i, 0) for i in ids) / len(ids)

            table.focus()
            table.move_cursor(table.row_count // 2)
            await pilot.pause()
            creator = RunCreator(f"{url}/api/v1", TRANSITIONS_PER_S / max(per_run, 1.0))
            creator.start()
            await asyncio.sleep(1.0)  # reach the steady rate before measuring
            window_start = time.perf_counter()
            seen_at_start = sum(transitions.values())
            latencies = []
            try:
                for i in range(presses):
                    key = "up" if (i // 20) % 2 else "down"
                    latencies.append(await timed_press(app, table, clock, key))
                    await asyncio.sleep(0.02)  # a fast typist, not a flood
            finally:
                creator.halt.set()
                await asyncio.to_thread(creator.join)
            window = time.perf_counter() - window_start
            rate = (sum(transitions.values()) - seen_at_start) / window
    return {
        "first_paint": first_paint,
        "loaded": all_loaded,
        "load_cpu": load_cpu,
        "latencies": latencies,
        "transitions_per_s": rate,
        "transitions_per_run": per_run,
    }


def measure_app(count: int, presses: int) -> dict[str, Any]:
    """Builds a database of ``count`` runs, starts a daemon on it, drives the app."""
    from bench.store_1m import build_db
    from tests.integration.conftest import Daemon

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_db(str(root / "apsis.db"), count)
        daemon = Daemon(
            root, NOOP_JOBS, args=["--since", "now"], env={"APSIS_AGENT_IDLE_TIMEOUT": "5"}
        )
        try:
            daemon.start()
            found = asyncio.run(drive_app(daemon.url, root / "tui-state.json", count, presses))
            # A load takes keys for a second or two: the p99 of one would be its worst key.
            found["load_latencies"] = []
            for load in range(LOADS_WITH_KEYS):
                found["load_latencies"] += asyncio.run(
                    keys_while_loading(daemon.url, root / f"tui-state-{load}.json", count))
            return found
        finally:
            daemon.cleanup()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def metric(value: float, unit: str, digits: int) -> dict[str, Any]:
    return {"value": round(value, digits), "unit": unit, "baseline": None}


def run(quick: bool) -> dict[str, dict[str, Any]]:
    presses = 100 if quick else 300
    app = measure_app(20_000 if quick else 100_000, presses)
    runs = make_runs(100_000)
    bulk = asyncio.run(measure_bulk(runs))
    paged = asyncio.run(measure_paged(runs))
    keys = asyncio.run(measure_keypress(runs, presses))
    return {
        # SPEC §1.13: the app, against a daemon (20 000 runs with --quick).
        "tui_first_paint_s_100k": metric(app["first_paint"], "s", 3),
        "tui_keypress_p99_ms": metric(percentile(app["latencies"], 0.99) * 1000, "ms", 1),
        "tui_loaded_s_100k": metric(app["loaded"], "s", 2),
        "tui_loaded_cpu_s_100k": metric(app["load_cpu"], "s", 2),
        "tui_load_keypress_p99_ms": metric(percentile(app["load_latencies"], 0.99) * 1000,
                                           "ms", 1),
        "tui_keypress_transitions_per_s": metric(app["transitions_per_s"], "1/s", 1),
        # The widget alone, over runs already in memory.
        "tui_table_first_paint_s_100k": metric(bulk["first_paint"], "s", 3),
        "tui_table_first_page_paint_s": metric(paged["first_page"], "s", 3),
        "tui_table_loaded_s_100k": metric(paged["loaded"], "s", 3),
        "tui_table_refilter_ms_100k": metric(bulk["refilter_max"] * 1000, "ms", 1),
        "tui_table_keypress_p99_ms": metric(percentile(keys, 0.99) * 1000, "ms", 1),
    }


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
