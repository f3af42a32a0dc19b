"""A burst of runs due together: the first programs run while the last runs are still
being made `starting`, and every run still has its whole life, in order."""

from __future__ import annotations

import pytest

from apsis.engine.runner import STARTING_AHEAD
from apsis.lib.timefmt import parse_time

pytestmark = pytest.mark.timeout(180)

LIFE = ["scheduled", "starting", "running", "success"]


async def test_a_burst_starts_programs_before_all_its_runs_are_starting(harness):
    """Five times as many runs as are made `starting` at once: the first program is
    running before the last run becomes `starting` (all of a burst used to be written
    `starting` before the first was spawned), and each run goes through every state."""
    harness.write_jobs({"quick": "program: 'true'\n"})
    await harness.start()
    run_ids = await harness.run("quick", count=5 * STARTING_AHEAD)
    runs = await harness.wait(run_ids, timeout=150)
    for run_id, run in runs.items():
        assert run["state"] == "success" and run["exit_code"] == 0, run
        times = [parse_time(run["times"][state]) for state in LIFE]
        assert times == sorted(times)
        assert [entry["state"] for entry in await harness.service.run_log(run_id)] == LIFE
    first_running = min(parse_time(run["times"]["running"]) for run in runs.values())
    last_starting = max(parse_time(run["times"]["starting"]) for run in runs.values())
    assert first_running < last_starting
    assert harness.engine.runs.live() == []
