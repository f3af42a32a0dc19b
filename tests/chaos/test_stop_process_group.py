"""Issue 11.7: a stop's grace period applies to the program's process group.

`sleep 301 & sleep 302 & (trap '' TERM; sleep 303) & wait` with `grace_period: 3s`: stop
sent SIGTERM, bash exited, the run was finished and `sleep 303` lived on for good. Now
the run is finished when its whole group is gone, SIGKILL reaches the group when the
grace period expires, and what a child writes after the leader exits is kept.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tests.integration.helpers import create, http, wait_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


def _sleepers(marker: str) -> list[int]:
    """Pids of live `sleep` processes whose command line carries `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if argv[0] == b"sleep" and marker.encode() in argv and not zombie:
            pids.append(int(entry))
    return pids


def test_stop_kills_the_group_when_the_grace_period_expires(apsis_daemon):
    # GNU sleep sums its operands: a unique fraction tells this test's sleeps apart.
    seconds = f"0.{uuid.uuid4().int % 10**12}"
    job = ("program:\n  type: shell\n"
           f"  command: \"sleep 301 {seconds} & sleep 302 {seconds} & "
           f"(trap '' TERM; sleep 303 {seconds}; echo never) & echo started; wait\"\n"
           "  stop: {signal: SIGTERM, grace_period: 3s}\n")
    daemon = apsis_daemon({"group": job})
    with http(daemon) as api:
        run_id = create(api, "group")[0]["run_id"]
        wait_run(api, run_id, {"running"})
        deadline = time.monotonic() + 10
        while len(_sleepers(seconds)) < 3:
            assert time.monotonic() < deadline, "the three sleeps never started"
            time.sleep(0.05)
        stopped = time.monotonic()
        assert api.post(f"/runs/{run_id}/stop").status_code == 200
        # SIGTERM ends bash and two sleeps; the third ignores it and keeps the run going.
        time.sleep(1.5)
        assert _sleepers(seconds) != [] and api.get(f"/runs/{run_id}").json()["state"] == "stopping"
        run = wait_run(api, run_id, timeout=15)
        assert 2.5 < time.monotonic() - stopped < 10
        assert _sleepers(seconds) == [], "a process of the group outlived the stop"
        log = [e["message"] for e in api.get(f"/runs/{run_id}/log").json()["log"]]
        assert any("SIGKILL" in m for m in log), log
        assert run["state"] in ("failure", "error", "success"), run


def test_output_written_after_the_leader_exits_is_kept(apsis_daemon):
    job = ("program: {type: shell, command: '(sleep 1; echo late from the child) & echo early'}\n")
    daemon = apsis_daemon({"child": job})
    with http(daemon) as api:
        run_id = create(api, "child")[0]["run_id"]
        run = wait_run(api, run_id, timeout=15)
        assert run["state"] == "success", run
        output = api.get(f"/runs/{run_id}/output/output").text
        assert output == "early\nlate from the child\n"
