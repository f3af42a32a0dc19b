"""A large window is created in parts (a transaction each, bounded memory), and a
daemon stopped between two parts neither doubles nor loses a run when it starts again."""

import asyncio
import collections
import datetime as dt

import pytest

from apsis.engine import core
from apsis.lib.timefmt import parse_time

JOBS = {f"job{i}": "schedule: {type: interval, interval: 1m}\nprogram: {type: no-op}\n"
        for i in range(6)}


async def schedule_times(harness) -> dict[str, list[dt.datetime]]:
    runs = (await harness.store.query_runs(limit=10_000)).runs
    times = collections.defaultdict(list)
    for run in runs:
        times[run["job_id"]].append(parse_time(run["times"]["schedule"]))
    return {job: sorted(ts) for job, ts in times.items()}


def assert_each_minute_once(times: dict[str, list[dt.datetime]], horizon: float) -> None:
    assert set(times) == set(JOBS)
    for job, ts in times.items():
        assert len(ts) == len(set(ts)), f"{job}: a run planned twice"
        gaps = {(b - a).total_seconds() for a, b in zip(ts, ts[1:])}
        assert gaps == {60.0}, f"{job}: runs lost ({sorted(gaps)})"
        assert (ts[-1] - ts[0]).total_seconds() >= horizon - 120


@pytest.mark.timeout(60)
async def test_a_window_is_created_in_parts_each_run_once(harness, monkeypatch):
    monkeypatch.setattr(core, "WINDOW_PART", 50)  # 6 schedules of 60 runs: six parts
    commits = []
    original = core.Engine._create_part

    async def counted(engine, part):
        commits.append(len(part.runs))
        await original(engine, part)

    monkeypatch.setattr(core.Engine, "_create_part", counted)
    harness.write_jobs(JOBS)
    await harness.start(since="now", horizon=3600)
    assert len(commits) == 6 and sum(commits) >= 6 * 59
    assert_each_minute_once(await schedule_times(harness), 3600)
    # The schedules' own clocks, kept between parts, are gone with the last part.
    assert await harness.store.get_schedule_clocks() == {}
    assert await harness.store.get_clock() is not None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("since", ["now", "clock"])
async def test_a_daemon_stopped_between_parts_neither_doubles_nor_loses(harness, monkeypatch,
                                                                         since):
    monkeypatch.setattr(core, "WINDOW_PART", 50)
    original = core.Engine._create_part
    parts = []

    async def crashing(engine, part):
        if len(parts) == 3:
            raise RuntimeError("the daemon dies here")
        parts.append(part)
        await original(engine, part)

    monkeypatch.setattr(core.Engine, "_create_part", crashing)
    harness.write_jobs(JOBS)
    with pytest.raises(RuntimeError, match="dies here"):
        await harness.start(since="now", horizon=3600)
    half = await schedule_times(harness)
    assert 0 < len(half) < len(JOBS)  # some schedules' runs were created, not all
    await harness.stop()

    monkeypatch.setattr(core.Engine, "_create_part", original)
    await harness.start(since=since, horizon=3600)
    assert_each_minute_once(await schedule_times(harness), 3600)
    assert await harness.store.get_schedule_clocks() == {}


@pytest.mark.timeout(60)
async def test_a_first_start_serves_while_its_window_is_created_soonest_first(harness, monkeypatch):
    """Past FIRST_WINDOW_SECONDS the parts left are created while the engine takes
    writes; they come in the order their schedules are due, each run once."""
    monkeypatch.setattr(core, "WINDOW_PART", 50)
    monkeypatch.setattr(core, "FIRST_WINDOW_SECONDS", 0.0)
    gate = asyncio.Event()
    firsts = []
    original = core.Engine._create_part

    async def gated(engine, part):
        await gate.wait()
        firsts.append(min(p.run.time for p in part.runs))
        await original(engine, part)

    monkeypatch.setattr(core.Engine, "_create_part", gated)
    # Each job's first run some seconds apart, the last job's soonest.
    staggered = {name: text.replace("interval: 1m", f"interval: 1m, phase: {5 * i}s")
                 for i, (name, text) in enumerate(reversed(JOBS.items()))}
    harness.write_jobs({**staggered, "manual": "program: {type: no-op}\n"})
    engine = await harness.start(since="now", horizon=3600, planned=False)
    assert engine.restored and not engine.planning.done()
    assert await schedule_times(harness) == {}
    [run_id] = await harness.run("manual")  # a write, answered while the window waits
    assert (await harness.wait(run_id))[run_id]["state"] == "success"
    gate.set()
    await engine.planning
    assert len(firsts) == 6 and firsts == sorted(firsts)
    times = await schedule_times(harness)
    del times["manual"]
    assert_each_minute_once(times, 3600)


async def kept_times(harness) -> dict[str, list[dt.datetime]]:
    """Each job's schedule times of the runs not skipped: those that run or will."""
    runs = (await harness.store.query_runs(limit=10_000)).runs
    times = collections.defaultdict(list)
    for run in runs:
        if run["state"] != "skipped":
            times[run["job_id"]].append(parse_time(run["times"]["schedule"]))
    return {job: sorted(ts) for job, ts in times.items()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fail_at", [0, 2])
async def test_a_daemon_stopped_in_a_reload_keeps_every_schedules_runs(harness, monkeypatch,
                                                                       fail_at):
    """A reload replaces the changed jobs' future runs.  Stopped before its first part
    (or between parts) is committed, each schedule keeps its old runs or has its new
    ones: none is left with its runs skipped and nothing in their place."""
    monkeypatch.setattr(core, "WINDOW_PART", 50)
    harness.write_jobs(JOBS)
    await harness.start(since="now", horizon=3600)
    assert_each_minute_once(await kept_times(harness), 3600)

    original = core.Engine._create_part
    parts = []

    async def crashing(engine, part, **kwargs):
        if len(parts) == fail_at:
            raise RuntimeError("the daemon dies here")
        parts.append(part)
        await original(engine, part, **kwargs)

    monkeypatch.setattr(core.Engine, "_create_part", crashing)
    harness.write_jobs({name: text.replace("no-op}", "no-op, duration: 1}")
                        for name, text in JOBS.items()})
    with pytest.raises(RuntimeError, match="dies here"):
        await harness.engine.reload_jobs()
    await harness.stop()

    monkeypatch.setattr(core.Engine, "_create_part", original)
    await harness.start(since="clock", horizon=3600)
    assert_each_minute_once(await kept_times(harness), 3600)
