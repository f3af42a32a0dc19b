"""Quick programs, whose end is known before their `running` is written: `running` and the
end go in one commit, yet every transition is seen as if each had its own."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from apsis.engine.core import utcnow
from apsis.engine.ports import Step
from apsis.lib.timefmt import parse_time
from apsis.model.states import State, TransitionError

pytestmark = pytest.mark.timeout(120)

LIFE = ["scheduled", "starting", "running", "success"]


def transitions_of(events: list[dict], run_id: str) -> list[tuple[str, str]]:
    return [(e["from"], e["to"]) for e in events
            if e["type"] == "run_transition" and e["run"]["run_id"] == run_id]


async def test_a_burst_of_quick_programs_records_every_transition(harness):
    """A burst keeps the loop busy, so most exits are known before `running` is written:
    each run still has its three transitions, in order, each with its log entry and
    events, its exit code and its output."""
    harness.write_jobs({"quick": "params: [n]\nprogram: 'echo run {{ n }}'\n"})
    await harness.start()
    published: list[dict] = []
    harness.engine.bus.listen(published.append)
    first = harness.engine.bus.last_seq
    engine = harness.engine
    job = engine.get_job("quick")
    run_ids = []
    for n in range(150):
        [run] = await engine.create_runs(job, {"n": str(n)}, times=[utcnow()])
        run_ids.append(run.run_id)
    runs = await harness.wait(run_ids, timeout=90)
    stored = await harness.store.events_since(first, limit=100_000)
    assert [e["seq"] for e in published if e["seq"] > first] == [e["seq"] for e in stored]
    for n, run_id in enumerate(run_ids):
        run = runs[run_id]
        assert run["state"] == "success" and run["exit_code"] == 0 and run["signal"] is None
        assert run["outputs"] == [{"output_id": "output", "length": len(f"run {n}\n")}]
        assert await harness.service.read_output(run_id, "output") == f"run {n}\n".encode()
        times = [parse_time(run["times"][state]) for state in LIFE]
        assert times == sorted(times)
        log = await harness.service.run_log(run_id)
        assert [entry["state"] for entry in log] == LIFE
        assert log[2]["message"].startswith("pid ")
        assert transitions_of(stored, run_id) == [("new", "scheduled"), *zip(LIFE, LIFE[1:])]
        # Each transition's events: the transition, then its log entry, in seq order.
        mine = [e for e in stored if e["type"] in ("run_transition", "run_log")
                and e.get("run_id", e.get("run", {}).get("run_id")) == run_id]
        assert [(e["type"], e.get("to") or e["entry"]["state"]) for e in mine] == [
            (kind, state) for state in LIFE for kind in ("run_transition", "run_log")]
        running, success = (e for e in mine if e["type"] == "run_transition" and e["to"] in
                            ("running", "success"))
        assert running["run"]["state"] == "running" and success["run"]["state"] == "success"
        assert success["run"]["times"]["running"] == running["run"]["times"]["running"]
    assert harness.engine.runs.live() == []
    counts = await harness.store.count_runs_by_state()
    assert counts["success"] == len(run_ids) and counts["running"] == counts["starting"] == 0


async def test_several_transitions_in_one_commit(harness):
    """`Engine.transitions`: each step its own log entry and events, in order, recorded on
    the run as the steps before leave it; actions react to each, once committed."""
    harness.write_jobs({"later": "program: {type: no-op}\nsuccessors: next\n",
                        "next": "program: {type: no-op}\n"})
    await harness.start()
    engine = harness.engine
    [run_id] = await harness.run("later", delay=3600)
    run = engine.runs[run_id]
    first = engine.bus.last_seq
    ended = utcnow() - dt.timedelta(seconds=30)  # before `running`: the time is clamped
    assert await engine.transitions(run, [
        Step(State.STARTING), Step(State.RUNNING, "pid 1"),
        Step(State.SUCCESS, None, {"exit_code": 0}, at=ended)], expect={State.SCHEDULED})
    assert run.state == State.SUCCESS and run.exit_code == 0
    assert run_id not in engine.runs
    stored = await harness.store.get_run(run_id)
    assert stored["state"] == "success" and set(LIFE) <= set(stored["times"])
    # Not before `running`, though it ended earlier: times stay in order.
    assert stored["times"]["success"] == stored["times"]["running"]
    log = await harness.service.run_log(run_id)
    assert [e["state"] for e in log] == LIFE
    assert log[2]["message"] == "pid 1" and log[3]["message"] == "success"
    events = await harness.store.events_since(first)
    assert transitions_of(events, run_id) == list(zip(LIFE, LIFE[1:]))
    assert [e["run"]["state"] for e in events if e["type"] == "run_transition"] == LIFE[1:]
    # The successor fires on the committed success.
    next_runs = (await harness.store.query_runs(job_id="next")).runs
    for _ in range(100):
        if next_runs:
            break
        await asyncio.sleep(0.05)
        next_runs = (await harness.store.query_runs(job_id="next")).runs
    assert len(next_runs) == 1


async def test_a_step_the_table_refuses_writes_nothing(harness):
    harness.write_jobs({"later": "program: {type: no-op}\n"})
    await harness.start()
    engine = harness.engine
    [run_id] = await harness.run("later", delay=3600)
    run = engine.runs[run_id]
    first = engine.bus.last_seq
    with pytest.raises(TransitionError, match="running; it cannot become skipped"):
        await engine.transitions(run, [Step(State.STARTING), Step(State.RUNNING),
                                       Step(State.SKIPPED)])
    assert run.state == State.SCHEDULED and "starting" not in run.times
    assert (await harness.store.get_run(run_id))["state"] == "scheduled"
    assert await harness.store.events_since(first) == []
    assert [e["state"] for e in await harness.service.run_log(run_id)] == ["scheduled"]
