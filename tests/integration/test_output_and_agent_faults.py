"""Faults found by attacking a real daemon (issue 11): a live output GET that took the
whole spool into memory, and runs mislabelled after the agent was killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from apsis.store.outputs import cut_marker

from .helpers import create, http, wait_run

BIG = 300_000_000  # spooled in well under a second
CAP = 4 * 1024 * 1024
PATTERN = b"abcdefghi\n"  # what `yes abcdefghi` writes, over and over


def spooled(start: int, end: int) -> bytes:
    """Bytes [start, end) of the big program's output."""
    first = start - start % len(PATTERN)
    data = PATTERN * ((end - first) // len(PATTERN) + 1)
    return data[start - first:end - first]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.mark.timeout(90)
def test_live_output_get_is_streamed_and_capped(apsis_daemon):
    daemon = apsis_daemon({"big": f"program: 'yes abcdefghi | head -c {BIG}; sleep 60'\n"},
                          config="output: {max_bytes: 4MiB}\n")
    with http(daemon) as api:
        [run] = create(api, "big")
        run_id = run["run_id"]
        url = f"/runs/{run_id}/output/output"
        deadline = time.monotonic() + 30
        while True:
            outputs = api.get(f"/runs/{run_id}/outputs").json()["outputs"]
            if outputs and outputs[0]["length"] == BIG:
                break
            assert time.monotonic() < deadline, outputs
            time.sleep(0.2)
        assert api.get(f"/runs/{run_id}").json()["state"] == "running"
        before = peak_rss_mb(daemon.pid)

        cut = BIG - CAP
        expected = spooled(0, CAP // 2) + cut_marker(cut) + spooled(BIG - CAP // 2, BIG)
        for params in ({}, {"end": 137438953473}):
            response = api.get(url, params=params)
            assert response.status_code == 200, response.text[:200]
            assert response.headers["X-Apsis-Output-Cut"] == str(cut)
            assert response.content == expected
        # A range under the cap is exact, wherever it is.
        response = api.get(url, params={"start": BIG - 1_000_003, "end": BIG - 3})
        assert "X-Apsis-Output-Cut" not in response.headers
        assert response.content == spooled(BIG - 1_000_003, BIG - 3)

        assert peak_rss_mb(daemon.pid) - before < 100
        api.post(f"/runs/{run_id}/stop")
        finished = wait_run(api, run_id, timeout=30)
    assert finished["state"] == "success"  # it ended after the stop signal (as in Apsis)


@pytest.mark.timeout(90)
def test_runs_adopted_after_the_agent_is_killed_are_errors_with_their_output(apsis_daemon):
    """kill -9 of the agent: a new one adopts the processes, which finish; their exit
    status cannot be known, so each run is an error that says so (not a failure, which
    would retry work that may have succeeded), and its output is all there."""
    daemon = apsis_daemon({"nap": "program: 'sleep 5; echo done'\n"
                                  "action: {type: retry, count: 1, if: {states: [failure]}}\n"})
    with http(daemon) as api:
        ids = [create(api, "nap")[0]["run_id"] for _ in range(5)]
        for run_id in ids:
            wait_run(api, run_id, {"running"})
        lock = Path(str(daemon.db) + ".agent") / "server.lock"
        agent_pid = int(lock.read_text().split()[0])
        os.kill(agent_pid, signal.SIGKILL)
        finished = [wait_run(api, run_id, timeout=40) for run_id in ids]
        for run in finished:
            assert run["state"] == "error", run
            assert "exit status is unknown" in run["message"], run["message"]
            assert api.get(f"/runs/{run['run_id']}/output/output").content == b"done\n"
        assert int(lock.read_text().split()[0]) != agent_pid  # a new agent adopted them
        # No retry: an error is not a failure.
        assert len(api.get("/runs", params={"job_id": "nap"}).json()["runs"]) == 5
