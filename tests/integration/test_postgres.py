"""A real daemon on PostgreSQL (SPEC §1.14): runs, a crash and restart, the lock, db copy."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .helpers import create, http, wait_run

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

JOBS = {
    "echo": "params: [n]\nprogram: \"printf 'out %s\\\\n\\\\377' {{ n|shquote }}; exit {{ n|int % 2 }}\"\n",
    "slow": "program: 'echo before; sleep 2; echo after'\n",
}


def _apsisctl(*args: str, cwd: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apsis_cli.apsisctl", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_daemon_on_postgresql_runs_restarts_and_refuses_maintenance(apsis_daemon, pg_url):
    daemon = apsis_daemon(JOBS, database=pg_url)
    with http(daemon) as api:
        ids = [create(api, "echo", args={"n": str(n)})[0]["run_id"] for n in range(4)]
        runs = [wait_run(api, run_id) for run_id in ids]
        assert [r["state"] for r in runs] == ["success", "failure", "success", "failure"]
        for n, run_id in enumerate(ids):
            assert api.get(f"/runs/{run_id}/output/output").content == f"out {n}\n\xff".encode("latin-1")
        page = api.get("/runs", params={"job_id": "echo", "state": "failure"}).json()
        assert sorted(r["run_id"] for r in page["runs"]) == [ids[1], ids[3]]

        # A maintenance command that writes is refused while a daemon leads, naming it (a
        # second daemon serves as a standby instead: test_standby.py).
        second = _apsisctl("db", "vacuum", "--db", pg_url, cwd=daemon.root)
        assert second.returncode != 0
        assert "in use by another Apsis daemon" in second.stderr
        assert f"pid {daemon.pid}" in second.stderr, second.stderr

        # kill -9 mid-run: the restarted daemon restores the run from PostgreSQL.
        [slow] = create(api, "slow")
        wait_run(api, slow["run_id"], {"running"})
        daemon.kill()
        time.sleep(0.5)
        daemon.start()
        done = wait_run(api, slow["run_id"], timeout=30)
        assert done["state"] == "success"
        assert api.get(f"/runs/{slow['run_id']}/output/output").content == b"before\nafter\n"
        # History survived and run ids go on past every id handed out.
        assert wait_run(api, ids[0])["state"] == "success"
        [later] = create(api, "echo", args={"n": "0"})
        assert int(later["run_id"][1:]) > int(slow["run_id"][1:])


def test_db_copy_moves_a_sqlite_history_to_postgresql(apsis_daemon, pg_url):
    lite = apsis_daemon(JOBS)
    with http(lite) as api:
        ids = [create(api, "echo", args={"n": str(n)})[0]["run_id"] for n in range(3)]
        before = [wait_run(api, run_id) for run_id in ids]
        log = api.get(f"/runs/{ids[0]}/log").json()["log"]
    lite.stop()

    copied = _apsisctl("db", "copy", "--from", str(lite.db), "--to", pg_url, "--chunk", "2")
    assert copied.returncode == 0, copied.stderr
    assert "copied 3 run(s)" in copied.stderr and "verified" in copied.stderr
    again = _apsisctl("db", "copy", "--from", str(lite.db), "--to", pg_url)
    assert again.returncode == 0, again.stderr
    assert "copied 0 run(s) and 0 event(s)" in again.stderr, again.stderr

    pg = apsis_daemon(JOBS, database=pg_url)
    with http(pg) as api:
        assert [api.get(f"/runs/{run_id}").json() for run_id in ids] == before
        assert api.get(f"/runs/{ids[0]}/log").json()["log"] == log
        assert api.get(f"/runs/{ids[2]}/output/output").content == b"out 2\n\xff"
        [new] = create(api, "echo", args={"n": "0"})
        assert int(new["run_id"][1:]) > int(ids[-1][1:])
