"""Stopping as in Apsis, against a real daemon (issue 12 item 8): a program that ends
after the stop signal (by request or at its stop time) is a success; one killed with
SIGKILL once the grace period is over is a failure; a rerun keeps the stop time."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from apsis.lib.timefmt import format_time, parse_time

from .helpers import create, wait_run

pytestmark = pytest.mark.timeout(90)

JOBS = {
    # A service: runs until it is stopped.
    "service": """\
program:
  type: program
  argv: [/bin/sleep, "600"]
""",
    # Ignores SIGTERM: only SIGKILL ends it.
    "stubborn": """\
program:
  type: shell
  command: "trap '' TERM; echo up; sleep 600"
  stop:
    signal: SIGTERM
    grace_period: 1
""",
    "idle": """\
program:
  type: no-op
  duration: 600
""",
}


def running(api, job_id: str, **body) -> dict:
    [run] = create(api, job_id, **body)
    return wait_run(api, run["run_id"], {"running"})


def test_a_program_stopped_by_request_that_exits_is_a_success(api):
    run = running(api, "service")
    assert api.post(f"/runs/{run['run_id']}/stop").status_code == 200
    done = wait_run(api, run["run_id"])
    assert done["state"] == "success", done
    assert done["message"] == "stopped by request" and done["signal"] == "SIGTERM"


def test_a_no_op_stopped_by_request_is_a_success(api):
    run = running(api, "idle")
    assert api.post(f"/runs/{run['run_id']}/stop").status_code == 200
    assert wait_run(api, run["run_id"])["state"] == "success"


def test_a_program_killed_after_the_grace_period_is_a_failure(api):
    run = running(api, "stubborn")
    deadline = time.monotonic() + 10
    while api.get(f"/runs/{run['run_id']}/output/output").content != b"up\n":
        assert time.monotonic() < deadline, "the program did not start"
        time.sleep(0.05)
    assert api.post(f"/runs/{run['run_id']}/stop").status_code == 200
    done = wait_run(api, run["run_id"], timeout=15)
    assert done["state"] == "failure" and done["signal"] == "SIGKILL", done
    assert "killed by SIGKILL" in done["message"]


def test_a_stop_time_ends_a_run_in_success_and_a_rerun_keeps_it(api):
    stop = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    run = running(api, "service", times={"stop": format_time(stop)})
    done = wait_run(api, run["run_id"], timeout=15)
    assert done["state"] == "success" and done["message"] == "stop time reached", done

    rerun = api.post(f"/runs/{run['run_id']}/rerun").json()
    assert parse_time(rerun["times"]["stop"]) == parse_time(done["times"]["stop"])
    # Its stop time has passed: the rerun is stopped as soon as it runs.
    again = wait_run(api, rerun["run_id"], timeout=15)
    assert again["state"] == "success" and again["message"] == "stop time reached", again
