"""Fixtures for the store tests: a fresh database per test, and run dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apsis.store import Store


def make_run(
    run_id: str,
    *,
    job_id: str = "daily/load",
    state: str = "new",
    schedule: str | None = "2024-01-01T00:00:00+00:00",
    args: dict[str, str] | None = None,
    labels: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A run dict shaped like the API's run object."""
    times: dict[str, str] = {}
    if schedule is not None:
        times["schedule"] = schedule
        times["new"] = schedule
    run = {
        "run_id": run_id,
        "job_id": job_id,
        "args": args if args is not None else {},
        "state": state,
        "labels": labels if labels is not None else [],
        "times": times,
        "message": None,
        "program": {"type": "shell", "command": "true"},
        "conditions": [],
        "actions": [],
        "rerun_of": None,
        "attempt": 1,
        "exit_code": None,
        "signal": None,
        "outputs": [],
        "ad_hoc": False,
    }
    run.update(extra)
    return run


def transition_event(run: dict[str, Any], to: str) -> dict[str, Any]:
    return {
        "type": "run_transition",
        "run": {"run_id": run["run_id"], "job_id": run["job_id"]},
        "from": None,
        "to": to,
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "apsis.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(db_path)
    try:
        yield store
    finally:
        await store.close()
