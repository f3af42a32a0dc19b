"""SPEC §1.10 against a real daemon process: kill -9, restart, a second daemon, big output."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from .helpers import create, http, wait_run

PRINT_SLEEP_PRINT = """\
params: [n]
program: >-
  printf 'start %s\\n' {{ n|shquote }}; printf '\\033[32mgreen\\033[0m \\377\\n';
  sleep 3; printf 'end %s\\n' {{ n|shquote }}; exit {{ n|int % 2 }}
"""


def test_kill_9_while_running_then_restart_reattaches(apsis_daemon):
    daemon = apsis_daemon({"work": PRINT_SLEEP_PRINT})
    with http(daemon) as api:
        runs = [create(api, "work", args={"n": str(n)})[0]["run_id"] for n in (0, 1)]
        for run_id in runs:
            wait_run(api, run_id, {"running"})
        daemon.kill()
        time.sleep(0.5)
        daemon.start()
        finished = [wait_run(api, run_id, timeout=30) for run_id in runs]
        assert [r["state"] for r in finished] == ["success", "failure"]
        assert finished[1]["exit_code"] == 1
        for n, run in enumerate(finished):
            output = api.get(f"/runs/{run['run_id']}/output/output").content
            assert output == f"start {n}\n\x1b[32mgreen\x1b[0m \xff\nend {n}\n".encode("latin-1")
            log = [e["message"] for e in api.get(f"/runs/{run['run_id']}/log").json()["log"]]
            assert any("reattached" in m for m in log), log


def test_run_left_in_starting_that_never_started_runs_once(apsis_daemon):
    """A request's run left `starting` whose program the agent never started is started
    (it was asked for and nothing ran), once, with the program bound when it was made."""
    daemon = apsis_daemon({"once": "program: 'echo ran >> ran.txt'\n"}, start=False)
    from apsis.store import open_store

    async def leave_a_starting_run() -> str:
        store = await open_store(daemon.database)
        [run_id] = await store.allocate_run_ids(1)
        now = "2026-01-01T00:00:00Z"
        run = {"run_id": run_id, "job_id": "once", "args": {}, "state": "starting", "labels": [],
               "times": {"schedule": now, "starting": now}, "program": {"type": "shell", "command": "true"},
               "conditions": [], "actions": [], "outputs": []}
        await store.write([run], [{"run_id": run_id, "ts": now, "state": "starting", "message": "starting"}], [])
        await store.close()
        return run_id

    run_id = asyncio.run(leave_a_starting_run())
    daemon.start()
    with http(daemon) as api:
        run = wait_run(api, run_id)
        log = api.get(f"/runs/{run_id}/log").json()["log"]
    assert run["state"] == "success", run["message"]
    assert [e["state"] for e in log].count("running") == 1
    assert any("its agent has no record of it" in e["message"] for e in log), log
    # It ran its own bound program (`true`), not the job's current one.
    assert not (daemon.root / "ran.txt").exists()


@pytest.mark.sqlite_only  # on PostgreSQL a second daemon is a standby (test_standby.py)
def test_second_daemon_on_the_same_database_refuses(apsis_daemon):
    daemon = apsis_daemon({"x": "program: {type: no-op}\n"})
    second = subprocess.run(
        [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(daemon.jobs_dir),
         "--db", str(daemon.db), "--bind", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, cwd=daemon.root)
    assert second.returncode != 0
    assert "apsis.db" in second.stderr and str(daemon.pid) in second.stderr, second.stderr
    assert daemon.running


def test_big_output_does_not_grow_the_daemon(apsis_daemon):
    daemon = apsis_daemon(
        {"loud": "program: 'head -c 200000000 /dev/zero | tr \"\\\\0\" x; echo; echo tail-end'\n"},
        config="output: {max_bytes: 1MiB}\n")

    def rss() -> int:
        with open(f"/proc/{daemon.pid}/status") as status:
            return int(next(l for l in status if l.startswith("VmRSS")).split()[1])

    with http(daemon) as api:
        before = rss()
        [run] = create(api, "loud")
        run = wait_run(api, run["run_id"], timeout=60)
        after = rss()
        assert run["state"] == "success"
        data = api.get(f"/runs/{run['run_id']}/output/output").content
    assert len(data) < 1_100_000
    assert data.startswith(b"xxxx") and data.endswith(b"tail-end\n")
    assert b"bytes cut" in data
    assert after - before < 30_000, (before, after)  # KiB: far less than the 200 MB it wrote


def test_sigterm_stops_cleanly(apsis_daemon):
    daemon = apsis_daemon({"x": "program: {type: no-op}\n"})
    assert daemon.stop() == 0
    assert "stopped" in daemon.log_text()


def test_job_files_edited_while_running_are_picked_up(apsis_daemon):
    daemon = apsis_daemon({"a": "program: {type: no-op}\n"})
    with http(daemon) as api:
        daemon.write_job("b", "program: {type: no-op}\n")
        daemon.write_job("a", "program: {type: no-op, duration: [broken\n")
        deadline = time.monotonic() + 20
        while api.get("/jobs/b").status_code != 200:
            assert time.monotonic() < deadline, "the new job was not picked up"
            time.sleep(0.2)
        # The broken file keeps the previous version of its job, and the daemon runs on.
        assert api.get("/jobs/a").status_code == 200
        [run] = create(api, "a")
        assert wait_run(api, run["run_id"])["state"] == "success"
    assert "a.yaml" in daemon.log_text() and daemon.running


def test_taken_address_fails_fast_with_a_message(apsis_daemon):
    daemon = apsis_daemon({"x": "program: {type: no-op}\n"})
    other = apsis_daemon({"x": "program: {type: no-op}\n"}, start=False)
    result = subprocess.run(
        [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(other.jobs_dir),
         "--db", str(other.db), "--bind", daemon.bind],
        capture_output=True, text=True, timeout=30, cwd=other.root)
    assert result.returncode == 1
    assert f"cannot listen on {daemon.bind}" in result.stderr, result.stderr
