"""Scheduled runs held light (RunBook.lighten) look, change and restart exactly as runs.

A window's scheduled runs are kept as an id, two times and what their instance
shares until something asks for one: the API, a skip, a reload, a condition or
their due time must see the same run as the store holds, and change it once.
"""

from __future__ import annotations

import asyncio

import pytest

from apsis.engine.runbook import _Light
from apsis.model.states import State

HOURLY = """\
params: [region]
schedule: {type: interval, interval: 10m, args: {region: eu}}
program: {type: no-op}
"""


def light_ids(engine) -> set[str]:
    """The runs the book holds light (its memory, which no API shows)."""
    return {run_id for run_id, run in engine.runs._runs.items() if isinstance(run, _Light)}


async def scheduled_in_store(harness, job_id: str) -> dict[str, dict]:
    page = await harness.store.query_runs(job_id=job_id, states=["scheduled"], limit=1000)
    return {run["run_id"]: run for run in page.runs}


async def assert_shown_as_stored(harness, run_ids) -> None:
    """What GET /runs/{id} answers from memory is what the store holds, field by field."""
    for run_id in run_ids:
        shown = await harness.service.get_run(run_id)
        stored = await harness.store.get_run(run_id)
        assert shown == {key: stored[key] for key in shown}, run_id
        assert list(shown["times"]) == list(stored["times"])  # in order, as JSON shows them
        assert shown["state"] == "scheduled" and shown["args"] == {"region": "eu"}


@pytest.mark.timeout(60)
async def test_light_runs_are_shown_as_stored_and_restart_light(harness):
    harness.write_jobs({"tick": HOURLY})
    engine = await harness.start(horizon=3600)
    stored = await scheduled_in_store(harness, "tick")
    assert len(stored) >= 5 and light_ids(engine) == set(stored)
    # Shown one by one, their JSON is the store's; looked at, they stay light.
    await assert_shown_as_stored(harness, list(stored)[:2])
    assert light_ids(engine) == set(stored)

    await harness.stop()
    engine = await harness.start(since="clock", horizon=3600)
    assert light_ids(engine) == set(stored)  # restored light
    await assert_shown_as_stored(harness, stored)
    # Every run as the engine iterates them (a test's view) equals the store's, too.
    for run in engine.runs:
        jso, stored = run.to_jso(), await harness.store.get_run(run.run_id)
        assert jso == {key: stored[key] for key in jso}


@pytest.mark.timeout(60)
async def test_a_light_run_is_skipped_once_and_forgotten(harness):
    harness.write_jobs({"tick": HOURLY})
    engine = await harness.start(horizon=3600)
    run_id = min(light_ids(engine), key=lambda i: int(i[1:]))
    # Two requests at once get the one run in memory: it is skipped once.
    first, second = await asyncio.gather(harness.service.skip(run_id),
                                         harness.service.skip(run_id))
    assert first is second and first.state == State.SKIPPED
    assert run_id not in engine.runs
    stored = await harness.store.get_run(run_id)
    assert stored["state"] == "skipped" and stored["message"] == "skipped by request"
    log = [entry["state"] for entry in await harness.store.run_log(run_id)]
    assert log.count("skipped") == 1


@pytest.mark.timeout(60)
async def test_a_reload_skips_the_light_runs_of_a_changed_job_only(harness):
    harness.write_jobs({"tick": HOURLY, "other": HOURLY})
    engine = await harness.start(horizon=3600)
    old = await scheduled_in_store(harness, "tick")
    others = await scheduled_in_store(harness, "other")
    (harness.jobs / "tick.yaml").write_text(HOURLY.replace("10m", "15m"))
    result = await engine.reload_jobs()
    assert result["changed"] == ["tick"]
    for run_id in old:
        stored = await harness.store.get_run(run_id)
        assert stored["state"] == "skipped" and "rescheduled" in stored["message"]
    new = await scheduled_in_store(harness, "tick")
    assert new and not set(new) & set(old)
    # The other job's runs were left alone, and light.
    assert set(others) <= light_ids(engine) and set(new) <= light_ids(engine)
    assert await scheduled_in_store(harness, "other") == others


@pytest.mark.timeout(60)
async def test_light_runs_count_for_conditions_and_start_when_due(harness):
    """A due light run starts; its instance's other light runs are counted by
    max_running as scheduled (not running), so it is not held back by them."""
    harness.write_jobs({"soon": """\
schedule: {type: interval, interval: 2s}
condition: {type: max_running, count: 1}
program: {type: no-op}
"""})
    engine = await harness.start(horizon=3600, max_ahead=5)
    first = min(light_ids(engine), key=lambda i: int(i[1:]))
    done = await harness.wait(first, timeout=20)
    assert done[first]["state"] == "success"
    assert engine.runs.get(first) is None
    assert all(state == State.SCHEDULED for _, state in engine.runs.instance_states("soon", {}))
