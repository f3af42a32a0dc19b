"""A stand-in for apsis.client.Client with canned, fixed data: for snapshot tests,
where a real daemon's run ids and times would change every run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from apsis.client import ApsisError, ApsisNotFound
from tests.tui.factory import BASE, iso, make_run

OUTPUT = (
    b"loading US prices for 2023-11-14\n"
    b"\x1b[32mok\x1b[0m  AAPL  189.71\n"
    b"\x1b[33mwarn\x1b[0m MSFT  missing close, using last\n"
    b"\x1b[31;1mfail\x1b[0m GOOG  timeout\n"
    b"done: 2 of 3\n"
)

JOBS = [
    {"job_id": "market/load-prices", "params": ["date", "country"],
     "schedule": [{"type": "daily", "tz": "America/New_York", "daytime": ["16:30:00"],
                   "args": {"country": "US"}}],
     "program": {"type": "shell", "command": "load-prices --date {{ date }}"},
     "condition": [], "action": [],
     "metadata": {"description": "Loads the day's closing prices.", "labels": ["prices", "daily"]}},
    {"job_id": "market/compute-returns", "params": ["date", "country"], "schedule": [],
     "program": {"type": "shell", "command": "compute-returns"}, "condition": [], "action": [],
     "metadata": {"labels": ["prices"]}},
    {"job_id": "ops/heartbeat", "params": [], "schedule": [{"type": "interval", "interval": 300}],
     "program": {"type": "no-op"}, "condition": [], "action": [],
     "metadata": {"labels": ["ops"]}},
]


# Job files as written, which only GET /jobs/{id} returns; ops/heartbeat has none, as
# an ad hoc job would not.
SOURCES = {
    "market/load-prices": (
        "# Closing prices, once the US market has closed.\n"
        "params: [date, country]\n"
        "schedule:\n  type: daily\n  tz: America/New_York\n  daytime: \"16:30\"\n"
        "  args: {country: US}\n"
        "program: load-prices --date {{ date }}\n"
        "metadata:\n  description: Loads the day's closing prices.\n  labels: [prices, daily]\n"
    ),
    "market/compute-returns": (
        "# Run by hand after load-prices.\n"
        "params: [date, country]\n"
        "program: compute-returns   # reads the prices table\n"
        "metadata: {labels: [prices]}\n"
    ),
}


def fixed_runs() -> list[dict[str, Any]]:
    """A dozen runs around BASE, of three jobs and every common state."""
    runs = []
    states = ["success", "success", "failure", "success", "error", "skipped", "success",
              "running", "running", "scheduled", "scheduled", "scheduled"]
    for i, state in enumerate(states):
        schedule = BASE - (9 - i) * 1200
        job = ("market/load-prices", "market/compute-returns", "ops/heartbeat")[i % 3]
        args = {"date": "2023-11-14", "country": ("US", "GB")[i % 2]} if i % 3 < 2 else {}
        running = schedule + (90 if i == 4 else 2)  # r5 started late
        end = running + 60 + i * 37 if state in ("success", "failure", "error") else None
        run = make_run(i + 1, schedule, job_id=job, state=state, args=args,
                       running=running, end=end, labels=["prices"] if i % 3 < 2 else ["ops"])
        run.update({"program": {"type": "shell", "command": f"{job.split('/')[1]} --n {i}"},
                    "conditions": [], "actions": [], "rerun_of": None, "attempt": 1,
                    "exit_code": {"success": 0, "failure": 1}.get(state),
                    "signal": None, "outputs": [{"output_id": "output", "length": len(OUTPUT)}],
                    "ad_hoc": False})
        if i == 3:
            run["conditions"] = [{"type": "dependency", "job_id": "market/load-prices",
                                  "args": {"date": "2023-11-13"}, "states": ["success"]}]
        runs.append(run)
    return runs


class FakeClient:
    """Answers from memory; ``push`` feeds the event stream."""

    url = "http://fake:5000"

    def __init__(self) -> None:
        self.store = {run["run_id"]: run for run in fixed_runs()}
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seq = 100
        self.calls: list[tuple[str, str]] = []
        self.pages_served = 0

    async def alive(self) -> dict[str, Any]:
        return {"status": "ok", "version": "0.1.0", "started_at": iso(BASE), "seq": self.seq}

    async def jobs(self, label: str | None = None) -> list[dict[str, Any]]:
        return list(JOBS)

    async def job(self, job_id: str) -> dict[str, Any]:
        for job in JOBS:
            if job["job_id"] == job_id:
                return {**job, "source": SOURCES.get(job_id)}
        raise ApsisNotFound(f"no job {job_id}", 404)

    async def job_schedule(self, job_id: str, start: Any = None, stop: Any = None,
                           limit: int | None = None) -> list[dict[str, Any]]:
        if job_id != "market/load-prices":
            return []
        return [{"job_id": job_id, "args": {"date": f"2023-11-{15 + n}", "country": "US"},
                 "time": iso(BASE + 3600 * 8 + n * 86400)} for n in range(limit or 3)]

    async def runs(self, *, job_id: str | None = None, limit: int = 100,
                   cursor: str | None = None, args: dict[str, str] | None = None,
                   **_: Any) -> dict[str, Any]:
        runs = [r for r in self.store.values()
                if (job_id is None or r["job_id"] == job_id)
                and all(r["args"].get(k) == v for k, v in (args or {}).items())]
        runs.sort(key=lambda r: r["times"]["schedule"], reverse=True)
        start = int(cursor or 0)  # the real cursor is opaque; an offset will do here
        end = start + limit
        self.pages_served += 1
        return {"runs": runs[start:end], "seq": self.seq,
                "cursor": str(end) if end < len(runs) else None}

    async def run_page_lines(self, pages: int, *, limit: int = 1000, cursor: str | None = None,
                             **_: Any) -> AsyncIterator[bytes]:
        for _page in range(pages):
            page = await self.runs(limit=limit, cursor=cursor)
            yield json.dumps(page).encode()
            cursor = page["cursor"]
            if cursor is None:
                break

    async def run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.store:
            raise ApsisNotFound(f"no run {run_id}", 404)
        return dict(self.store[run_id])

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        run = self.store[run_id]
        return [{"run_id": run_id, "ts": t, "state": s, "message": s}
                for s, t in run["times"].items() if s != "schedule"]

    async def outputs(self, run_id: str) -> list[dict[str, Any]]:
        return [{"output_id": "output", "length": len(OUTPUT)}]

    async def output(self, run_id: str, output_id: str = "output", *, start: int = 0,
                     follow: bool = True) -> AsyncIterator[bytes]:
        yield OUTPUT[start:]

    async def events(self, since: int | None = None, *,
                     on_state: Callable[[str], None] | None = None,
                     **_: Any) -> AsyncIterator[dict[str, Any]]:
        if on_state is not None:
            on_state("connecting")
            on_state("live")
        while True:
            yield await self.queue.get()

    def push(self, event: dict[str, Any]) -> None:
        self.seq += 1
        self.queue.put_nowait({"seq": self.seq, **event})

    async def _op(self, name: str, run_id: str, state: str) -> dict[str, Any]:
        self.calls.append((name, run_id))
        run = self.store[run_id]
        if name == "skip" and run["state"] not in ("scheduled", "waiting"):
            raise ApsisError(f"cannot skip {run_id}", 409, "conflict")
        run = {**run, "state": state, "times": {**run["times"], state: iso(BASE)}}
        self.store[run_id] = run
        return run

    async def skip(self, run_id: str) -> dict[str, Any]:
        return await self._op("skip", run_id, "skipped")

    async def start(self, run_id: str) -> dict[str, Any]:
        return await self._op("start", run_id, "starting")

    async def stop(self, run_id: str) -> dict[str, Any]:
        return await self._op("stop", run_id, "stopping")

    async def mark(self, run_id: str, state: str) -> dict[str, Any]:
        return await self._op("mark", run_id, state)

    async def create_runs(self, job_id: str, args: dict[str, str] | None = None,
                          **_: Any) -> list[dict[str, Any]]:
        number = len(self.store) + 1
        run = make_run(number, BASE + 60, job_id=job_id, state="scheduled", args=dict(args or {}))
        self.store[run["run_id"]] = run
        return [run]

    async def close(self) -> None:
        pass
