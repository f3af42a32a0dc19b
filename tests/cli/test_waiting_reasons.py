"""A waiting run says what it waits for, kept current, everywhere a user looks.

The README's first example once hung in silence: `apsis run ... --wait` printed a run
id and nothing more, because the run waited for a dependency that did not exist.
"""

from __future__ import annotations

import signal
import time

from tests.integration.helpers import create, http, wait_run

from .helpers import apsis, apsisctl, popen

JOBS = {
    "load": "params: [date]\nprogram: 'sleep 30'\n",
    "report": ("params: [date]\nprogram: 'echo done'\n"
               "condition: {type: dependency, job_id: load}\n"),
    "single": ("program: 'sleep 30'\n"
               "condition: {type: max_running, count: 1}\n"),
}


def _message_becomes(api, run_id: str, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        message = api.get(f"/runs/{run_id}").json()["message"] or ""
        if text in message or time.monotonic() > deadline:
            return message
        time.sleep(0.1)


def test_dependency_reason_follows_the_dependency(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    with http(daemon) as api:
        [report] = create(api, "report", args={"date": "2026-12-01"})
        rid = report["run_id"]
        wait_run(api, rid, {"waiting"})
        message = _message_becomes(api, rid, "no run of it")
        assert message == ("waiting for load date=2026-12-01 to be success: "
                           "no run of it is scheduled or running")
        # `apsis show` and the log say it too.
        shown = apsis(daemon.url, "show", rid)
        assert "no run of it is scheduled or running" in shown.stdout
        log = apsis(daemon.url, "log", rid).stdout
        assert "waiting for load date=2026-12-01" in log

        [load] = create(api, "load", args={"date": "2026-12-01"})
        wait_run(api, load["run_id"], {"running"})
        assert _message_becomes(api, rid, "is running").endswith(f"{load['run_id']} is running")
        api.post(f"/runs/{load['run_id']}/stop")
        wait_run(api, load["run_id"])


def test_wait_prints_the_reason_on_stderr_as_it_changes(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    with http(daemon) as api:
        [first] = create(api, "single")
        wait_run(api, first["run_id"], {"running"})
        [second] = create(api, "single")
        rid = second["run_id"]
        wait_run(api, rid, {"waiting"})
        assert _message_becomes(api, rid, "max_running") == (
            f"max_running: 1 of 1 running ({first['run_id']})")
        watcher = popen(daemon.url, "wait", rid, text=True)
        try:
            time.sleep(1.5)
            api.post(f"/runs/{rid}/skip")
            _, err = watcher.communicate(timeout=20)
        finally:
            if watcher.poll() is None:
                watcher.send_signal(signal.SIGKILL)
        waiting = [line for line in err.splitlines() if " waiting: " in line]
        assert waiting == [f"{rid} waiting: max_running: 1 of 1 running ({first['run_id']})"], err
        api.post(f"/runs/{first['run_id']}/stop")


def test_sanity_flags_a_run_waiting_on_a_run_that_does_not_exist(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    with http(daemon) as api:
        [report] = create(api, "report", args={"date": "2026-12-01"})
        rid = report["run_id"]
        wait_run(api, rid, {"waiting"})
        result = apsisctl(daemon.url, "sanity")
        assert result.returncode == 1, result
        [line] = [line for line in result.stdout.splitlines() if rid in line]
        assert line.startswith("waiting_on_none")
        assert "waits for load date=2026-12-01, which has no run scheduled" in line
        # Once that run exists (here, running), the wait has an end: nothing to flag.
        [load] = create(api, "load", args={"date": "2026-12-01"})
        wait_run(api, load["run_id"], {"running"})
        result = apsisctl(daemon.url, "sanity")
        assert rid not in result.stdout, result.stdout
        api.post(f"/runs/{load['run_id']}/stop")
        wait_run(api, load["run_id"])
