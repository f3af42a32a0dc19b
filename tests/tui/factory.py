"""Synthetic runs shaped like SPEC §1.6, for widget tests and the bench."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STATES_PAST = ("success", "success", "success", "failure", "error", "skipped")
BASE = 1_700_000_000.0  # a fixed "now" for tests


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def make_run(
    number: int,
    schedule: float,
    *,
    job_id: str = "data/load prices",
    state: str = "success",
    args: dict[str, str] | None = None,
    labels: list[str] | None = None,
    running: float | None = None,
    end: float | None = None,
) -> dict[str, Any]:
    times: dict[str, str] = {"schedule": iso(schedule)}
    if state not in ("new", "scheduled", "waiting", "skipped"):
        times["starting"] = iso(running if running is not None else schedule)
        if state != "starting":
            times["running"] = iso(running if running is not None else schedule)
    if state in ("success", "failure", "error"):
        times[state] = iso(end if end is not None else schedule + 30 + number % 90)
    return {
        "run_id": f"r{number}",
        "job_id": job_id,
        "args": args if args is not None else {"date": "2023-11-14", "country": "fr"},
        "state": state,
        "labels": labels or [],
        "times": times,
        "message": None,
    }


def make_runs(count: int, *, now: float = BASE, jobs: int = 50, future: int = 10) -> list[dict]:
    """``count`` runs one minute apart, ``future`` of them scheduled after ``now``."""
    runs = []
    start = now - (count - future) * 60
    for i in range(count):
        schedule = start + i * 60
        state = "scheduled" if schedule >= now else STATES_PAST[i % len(STATES_PAST)]
        runs.append(
            make_run(
                i + 1,
                schedule,
                job_id=f"group{i % 5}/job{i % jobs}",
                state=state,
                args={"date": f"2023-11-{1 + i % 28:02d}", "n": str(i % 7)},
                labels=["nightly"] if i % 3 == 0 else [],
            )
        )
    return runs
