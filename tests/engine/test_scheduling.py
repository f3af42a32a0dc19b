"""Schedules become runs exactly once, across restarts, with catch-up never silent."""

import asyncio
import collections
import datetime as dt

import pytest

from apsis.engine.core import utcnow
from apsis.lib.timefmt import format_time, parse_time


async def all_runs(harness, job_id):
    return (await harness.store.query_runs(job_id=job_id, limit=10_000)).runs


@pytest.mark.parametrize("mode,started", [("all", "every"), ("latest", "last"), ("none", "no")])
async def test_catchup_modes(harness, mode, started):
    harness.write_jobs({"tick": f"""\
        params: [time]
        schedule: {{type: interval, interval: 2s, catchup: {mode}}}
        program: {{type: no-op}}
    """})
    started_at = utcnow()
    since = started_at - dt.timedelta(seconds=9)
    await harness.start(since=format_time(since), horizon=0.5)
    after = utcnow()  # the engine's "now" lies between started_at and this
    runs = await all_runs(harness, "tick")
    missed = [r for r in runs if parse_time(r["times"]["schedule"]) <= after]
    assert len(missed) >= 4
    await harness.wait([r["run_id"] for r in missed])
    runs = sorted((await harness.store.get_runs([r["run_id"] for r in missed])),
                  key=lambda r: r["times"]["schedule"])
    states = [r["state"] for r in runs]
    # A run due between started_at and `after` may have been missed or run on time:
    # only those due before started_at were certainly missed.
    certain = [r["state"] for r in runs if parse_time(r["times"]["schedule"]) <= started_at]
    undecided = len(runs) - len(certain)
    assert len(certain) >= 3
    if started == "every":
        assert set(states) == {"success"}
    elif started == "last":
        assert set(certain[:-1]) == {"skipped"} and states[-1] == "success"
        assert states.count("success") <= 1 + undecided
    else:
        assert set(certain) == {"skipped"}
    for r in runs:
        if r["state"] == "skipped":
            assert "missed while the daemon was down" in r["message"]
    times = [r["times"]["schedule"] for r in await all_runs(harness, "tick")]
    assert len(times) == len(set(times))  # never doubled


async def test_restart_neither_doubles_nor_loses(harness):
    harness.write_jobs({"tick": "params: [time]\nschedule: {type: interval, interval: 1s}\nprogram: {type: no-op}\n"})
    await harness.start(since="now", horizon=2)
    await asyncio.sleep(1.5)
    await harness.stop()
    await asyncio.sleep(2.5)  # down across at least two schedule times
    await harness.start(since="clock", horizon=2)
    await asyncio.sleep(2)
    runs = await all_runs(harness, "tick")
    counts = collections.Counter(r["times"]["schedule"] for r in runs)
    assert max(counts.values()) == 1
    times = sorted(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in counts)
    gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:])}
    assert gaps == {1.0}  # nothing lost while down


@pytest.mark.parametrize("since", ["now", "2000-01-01T00:00:00Z"])
async def test_a_restart_since_now_or_a_time_does_not_plan_again_the_runs_made_ahead(harness, since):
    # The first daemon creates the next 30 s of runs; a restart that skips catch-up
    # (or starts it at a time long past) must not plan those times a second time.
    harness.write_jobs({"tick": "params: [time]\nschedule: {type: interval, interval: 1s}\nprogram: {type: no-op}\n"})
    await harness.start(since="now", horizon=30)
    await asyncio.sleep(0.3)
    await harness.stop()
    await harness.start(since=since, horizon=30)
    await asyncio.sleep(0.5)
    counts = collections.Counter(r["times"]["schedule"] for r in await all_runs(harness, "tick"))
    assert len(counts) >= 30
    assert max(counts.values()) == 1, [t for t, n in counts.items() if n > 1][:5]


async def test_dst_skip_is_recorded_as_skipped(harness):
    # 02:30 does not exist in New York on 2026-03-08: dst_gap skip records a skipped run.
    harness.write_jobs({"gap": """\
        params: [date]
        schedule: {type: daily, tz: America/New_York, daytime: "02:30", dst_gap: skip, catchup: none}
        program: {type: no-op}
    """})
    await harness.start(since="2026-03-07T00:00:00Z", horizon=0)
    runs = {r["args"]["date"]: r for r in await all_runs(harness, "gap")}
    assert runs["2026-03-08"]["state"] == "skipped"
    assert "gap" in runs["2026-03-08"]["message"]
    assert "missed" in runs["2026-03-09"]["message"]


@pytest.mark.parametrize("mode", ["none", "latest"])
async def test_catchup_applies_to_runs_created_before_the_downtime(harness, mode):
    # The horizon creates runs ahead; those whose time passes while the daemon is
    # down follow catchup just like runs created after it comes back.
    harness.write_jobs({"tick": f"""\
        params: [time]
        schedule: {{type: interval, interval: 1s, catchup: {mode}}}
        program: {{type: no-op}}
    """})
    await harness.start(since="now", horizon=30)
    await asyncio.sleep(0.2)
    await harness.stop()
    down_from = utcnow()
    await asyncio.sleep(3.2)
    # Restart just after a tick: the runs due each whole second are then all clearly
    # before (missed) or after the restart, never racing it.
    await asyncio.sleep(1.05 - utcnow().microsecond / 1e6)
    down_to = utcnow()
    await harness.start(since="clock", horizon=30)
    await asyncio.sleep(1.0)
    runs = [r for r in await all_runs(harness, "tick")
            if down_from < parse_time(r["times"]["schedule"]) < down_to]
    assert len(runs) >= 3
    runs = await harness.wait([r["run_id"] for r in runs])
    ordered = sorted(runs.values(), key=lambda r: parse_time(r["times"]["schedule"]))
    states = [r["state"] for r in ordered]
    if mode == "none":
        assert set(states) == {"skipped"}
    else:
        assert states[-1] == "success" and set(states[:-1]) == {"skipped"}
    assert all("catchup" in r["message"] for r in ordered if r["state"] == "skipped")


@pytest.mark.timeout(60)
async def test_scheduled_runs_render_their_own_run_id_and_share_the_rest(harness):
    """A window renders what does not depend on the run once per job and args; a
    template reading `run_id`, or calling a function, is still rendered for each run."""
    harness.write_jobs({
        "own": "schedule: {type: interval, interval: 10m}\n"
               "program: {type: shell, command: 'echo {{ run_id }} {{ job_id }}'}\n",
        "called": "schedule: {type: interval, interval: 10m}\n"
                  "program: {type: shell, command: 'echo {{ now() }}'}\n",
        "plain": "params: [region]\n"
                 "schedule: {type: interval, interval: 10m, args: {region: eu}}\n"
                 "program: {type: shell, command: 'echo {{ region }} {{ job_id }}'}\n",
    })
    engine = await harness.start(since="now", horizon=3600)
    runs = {job: [r for r in engine.runs if r.job_id == job] for job in ("own", "called", "plain")}
    assert all(len(rs) >= 5 for rs in runs.values())
    assert {r.program["command"] for r in runs["own"]} == {f"echo {r.run_id} own" for r in runs["own"]}
    assert len({r.program["command"] for r in runs["called"]}) == len(runs["called"])
    assert {r.program["command"] for r in runs["plain"]} == {"echo eu plain"}


@pytest.mark.timeout(60)
async def test_runs_created_together_render_their_own_run_id_and_share_the_rest(harness):
    """A request for several runs (`count`) renders the job once for them all, unless a
    template reads `run_id` or calls a function: then each run renders its own."""
    harness.write_jobs({
        "own": "program: {type: shell, command: 'echo {{ run_id }} {{ job_id }}'}\n",
        "called": "program: {type: shell, command: 'echo {{ now() }}'}\n",
        "plain": "params: [region]\nprogram: {type: shell, command: 'echo {{ region }} {{ job_id }}'}\n",
    })
    engine = await harness.start(since="now")
    later = [utcnow() + dt.timedelta(hours=1)] * 4

    async def commands(job_id: str, args: dict[str, str]) -> dict[str, str]:
        runs = await engine.create_runs(engine.get_job(job_id), args, times=later)
        return {r.run_id: r.program["command"] for r in runs}

    own = await commands("own", {})
    assert own == {run_id: f"echo {run_id} own" for run_id in own}
    called = await commands("called", {})
    assert len(set(called.values())) == 4
    assert set((await commands("plain", {"region": "eu"})).values()) == {"echo eu plain"}
