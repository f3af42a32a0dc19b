"""RunTable with 100 000 runs, headless: first paint, full load, refilter, keypresses.

Run: `.venv/bin/python -m bench.tui_table [--quick]`. Prints JSON metrics
(SPEC §1.13 shape). Measures the widget over an in-memory store, not the network:
the times a user waits for once the runs have arrived.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.strip import Strip

from apsis_tui.widgets.run_table import RunTable

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


class TimedTable(RunTable):
    """Records when a row was first drawn (the moment the user sees data) and when
    the last line was drawn (the end of a frame)."""

    first_row_at: float | None = None
    painted_at: float = 0.0

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        self.painted_at = time.perf_counter()
        if self.first_row_at is None and y > 0 and len(self.store):
            self.first_row_at = self.painted_at
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
            row = table.cursor_row
            start = time.perf_counter()
            app.post_message(events.Key(key, None))
            deadline = start + 5.0
            while (table.cursor_row == row or table.painted_at <= start) and (
                time.perf_counter() < deadline
            ):
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - start)
        stop.set()
        await feeder
        return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(quick: bool) -> dict[str, dict[str, Any]]:
    runs = make_runs(100_000)
    bulk = asyncio.run(measure_bulk(runs))
    paged = asyncio.run(measure_paged(runs))
    keys = asyncio.run(measure_keypress(runs, 100 if quick else 300))
    return {
        "tui_first_paint_s_100k": {
            "value": round(bulk["first_paint"], 3),
            "unit": "s",
            "baseline": None,
        },
        "tui_first_page_paint_s": {
            "value": round(paged["first_page"], 3),
            "unit": "s",
            "baseline": None,
        },
        "tui_loaded_s_100k": {"value": round(paged["loaded"], 3), "unit": "s", "baseline": None},
        "tui_refilter_ms_100k": {
            "value": round(bulk["refilter_max"] * 1000, 1),
            "unit": "ms",
            "baseline": None,
        },
        "tui_keypress_p99_ms": {
            "value": round(percentile(keys, 0.99) * 1000, 1),
            "unit": "ms",
            "baseline": None,
        },
    }


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
