"""The engine's one state-change path: a change the database refuses fails alone.

Changes that happen together share a commit; when the database refuses the
batch, each change is written again on its own, so only the bad one fails (with
`NotRecorded` for its caller) and the engine's memory never holds what the
database does not.
"""

from __future__ import annotations

import asyncio

from apsis.engine.core import utcnow
from apsis.engine.errors import NotRecorded
from apsis.model.states import State


async def test_a_refused_run_fails_alone_and_leaves_no_trace(harness):
    harness.write_jobs({"p": "params: [x]\nprogram: {type: no-op}\n"})
    engine = await harness.start()
    job = engine.get_job("p")
    now = [utcnow()]

    async def create(x: str):
        return await engine.create_runs(job, {"x": x}, times=now)

    # Bypassing the API's check: the args hold a string SQLite cannot encode.
    results = await asyncio.gather(*(create("\ud800" if i % 3 == 0 else f"ok{i}")
                                     for i in range(30)), return_exceptions=True)
    bad = [r for i, r in enumerate(results) if i % 3 == 0]
    good = [r for i, r in enumerate(results) if i % 3]
    assert all(isinstance(r, NotRecorded) for r in bad), bad
    assert "database refused" in str(bad[0])
    ids = [runs[0].run_id for runs in good]
    finished = await harness.wait(ids)
    assert {r["state"] for r in finished.values()} == {"success"}
    # No ghosts: what memory holds, the database holds too.
    assert len(engine.runs) == 0
    page = await engine.store.query_runs(job_id="p", limit=100)
    assert sorted(r["run_id"] for r in page.runs) == sorted(ids)


async def test_a_transition_applies_only_after_it_commits(harness):
    harness.write_jobs({"later": "program: {type: no-op}\n"})
    engine = await harness.start()
    [run_id] = await harness.run("later", delay=3600)
    run = engine.runs[run_id]
    transition = asyncio.ensure_future(engine.transition(run, State.SKIPPED, "test"))
    await asyncio.sleep(0)
    # Queued for the writer, not committed: memory and the API still say scheduled.
    assert run.state == State.SCHEDULED and engine.runs.state_of(run) == State.SKIPPED
    await transition
    assert run.state == State.SKIPPED and run_id not in engine.runs


async def test_a_stale_decision_loses_the_race(harness):
    harness.write_jobs({"later": "program: {type: no-op}\n"})
    engine = await harness.start()
    [run_id] = await harness.run("later", delay=3600)
    run = engine.runs[run_id]
    first = engine.transition(run, State.SKIPPED, "first", expect={State.SCHEDULED})
    second = engine.transition(run, State.ERROR, "second", expect={State.SCHEDULED})
    assert await asyncio.gather(first, second) == [True, False]
    stored = await engine.store.get_run(run_id)
    assert stored["state"] == "skipped" and stored["message"] == "first"
