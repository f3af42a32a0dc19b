"""Apsis's conditions with its own meaning, against a real daemon (issue 12 items 2, 6):
`exist:` as a list of states (an "alarm" job), and `skip_duplicate` on finished states.
The job files are written as the original Apsis reads them."""

from __future__ import annotations

import datetime as dt

import pytest

from apsis.lib.timefmt import format_time

from .helpers import create, wait_run

pytestmark = pytest.mark.timeout(90)

JOBS = {
    "ingredient": "params: [date, flavor]\n\nprogram:\n  type: no-op\n",
    "sundae": """\
params: [date, color]

program:
  type: no-op
  duration: 0

condition:
  - type: dependency
    job_id: ingredient
    args:
      flavor: vanilla

  - type: dependency
    job_id: ingredient
    args:
      flavor: chocolate
""",
    # An alarm: errors at once unless the day's purple sundae has succeeded.
    "alarm": """\
params: [date]

condition:
  type: dependency
  job_id: sundae
  args:
    color: purple
  exist: [success]

program:
  type: no-op
""",
    # A watcher: waits for the sundae while one is waiting, errors once none is.
    "watcher": """\
params: [date]

condition:
  type: dependency
  job_id: sundae
  args:
    color: green
  exist: [scheduled, waiting, running, success]

program:
  type: no-op
""",
    "once": """\
params: [color]

program:
  type: no-op
  duration: 0.2

condition:
  type: skip_duplicate
  check_states: [failure, error]
  target_state: error
""",
}


def test_an_alarm_errors_when_its_dependency_has_not_succeeded(api):
    [sundae] = create(api, "sundae", args={"date": "2024-04-20", "color": "purple"})
    wait_run(api, sundae["run_id"], {"waiting"})
    [alarm] = create(api, "alarm", args={"date": "2024-04-20"})
    run = wait_run(api, alarm["run_id"])
    assert run["state"] == "error"
    assert "sundae" in run["message"] and "success" in run["message"], run["message"]
    assert api.get(f"/runs/{sundae['run_id']}").json()["state"] == "waiting"


def test_an_alarm_succeeds_once_its_dependency_has(api):
    [sundae] = create(api, "sundae", args={"date": "2024-04-13", "color": "purple"})
    for flavor in ("vanilla", "chocolate"):
        create(api, "ingredient", args={"date": "2024-04-13", "flavor": flavor})
    assert wait_run(api, sundae["run_id"])["state"] == "success"
    [alarm] = create(api, "alarm", args={"date": "2024-04-13"})
    assert wait_run(api, alarm["run_id"])["state"] == "success"


def test_exist_is_checked_again_on_each_transition_of_the_dependency(api):
    soon = format_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    [sundae] = create(api, "sundae", args={"date": "2024-05-01", "color": "green"},
                      times={"schedule": soon})
    [watcher] = create(api, "watcher", args={"date": "2024-05-01"})
    # The sundae is scheduled: the watcher waits for it.
    assert wait_run(api, watcher["run_id"], {"waiting"})["state"] == "waiting"
    # Skipped: no run of it can be in one of those states any more.
    assert api.post(f"/runs/{sundae['run_id']}/skip").status_code == 200
    run = wait_run(api, watcher["run_id"], timeout=10)
    assert run["state"] == "error" and "sundae" in run["message"], run


def test_skip_duplicate_on_finished_states_errors_after_a_failure(api):
    red0, red1 = (create(api, "once", args={"color": "red"})[0] for _ in range(2))
    [blue0] = create(api, "once", args={"color": "blue"})
    for run in (red0, red1, blue0):
        assert wait_run(api, run["run_id"])["state"] == "success"

    assert api.post(f"/runs/{red1['run_id']}/mark/failure").status_code == 200
    [red2] = create(api, "once", args={"color": "red"})
    [blue1] = create(api, "once", args={"color": "blue"})
    red2 = wait_run(api, red2["run_id"])
    assert red2["state"] == "error" and red1["run_id"] in red2["message"], red2
    assert wait_run(api, blue1["run_id"])["state"] == "success"

    # Once no run of red is a failure or an error, red runs again.
    for run_id in (red1["run_id"], red2["run_id"]):
        assert api.post(f"/runs/{run_id}/mark/success").status_code == 200
    [red3] = create(api, "once", args={"color": "red"})
    assert wait_run(api, red3["run_id"])["state"] == "success"
