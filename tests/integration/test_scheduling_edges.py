"""Scheduling edge cases against a real daemon (issue 16): command actions' environment,
jittered due times, a short interval's bounded future, true end times, runs left
`starting` by a stopped daemon."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from apsis.lib.timefmt import format_time, parse_time
from tests.cli.helpers import apsisctl

from .helpers import create, http, wait_run

pytestmark = pytest.mark.timeout(120)


def wait_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} was not written within {timeout}s"
        time.sleep(0.05)
    return path.read_text()


def test_command_action_gets_the_run_in_its_environment(apsis_daemon, tmp_path):
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
              f"if k.startswith('APSIS_')}}, open({str(out)!r}, 'w')); print(file=open({str(out)!r}, 'a'))")
    job = ("program: {type: program, argv: [/bin/false]}\n"
           "action:\n"
           f"  - {{type: command, argv: [python3, -c, {json.dumps(script)}], if: {{states: [failure]}}}}\n")
    daemon = apsis_daemon({"notify": job})
    with http(daemon) as api:
        [run] = create(api, "notify")
        wait_run(api, run["run_id"])
        env = json.loads(wait_file(out))
    named = {k: env.get(k) for k in ("APSIS_RUN_ID", "APSIS_JOB_ID", "APSIS_STATE", "APSIS_URL")}
    assert named == {"APSIS_RUN_ID": run["run_id"], "APSIS_JOB_ID": "notify",
                   "APSIS_STATE": "failure", "APSIS_URL": daemon.url}


def test_a_jittered_run_shows_its_due_time_and_sanity_does_not_call_it_late(apsis_daemon):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    # A jitter of an hour: the run is due up to an hour after its schedule time.
    daemon = apsis_daemon({"held": "program: {type: no-op}\n"
                                   f"schedule: {{type: explicit, times: '{format_time(soon)}', "
                                   "jitter: 1h}\n"})
    with http(daemon) as api:
        [run] = api.get("/runs", params={"job_id": "held"}).json()["runs"]
        times = run["times"]
    due, scheduled = parse_time(times["due"]), parse_time(times["schedule"])
    assert scheduled <= due < scheduled + dt.timedelta(hours=1)
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 2.5)
    if due < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1):
        pytest.skip("the random jitter came out under 3 s")  # about one run in a thousand
    sanity = apsisctl(daemon.url, "sanity", "--late", "1s", "--json")
    assert sanity.returncode == 0, sanity.stdout + sanity.stderr
    assert [p for p in json.loads(sanity.stdout) if p["kind"] == "late_scheduled"] == []
