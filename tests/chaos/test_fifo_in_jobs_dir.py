"""Issue 11.6: a FIFO in the jobs directory, and SIGTERM with a thread stuck for good.

Reading `jobs/f.yaml` when it is a FIFO blocked a worker thread until a writer came:
job-file watching stopped for good, and SIGTERM then never ended the process (asyncio
and the interpreter wait for that thread), which kept the database lock until kill -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from apsis.daemon import SHUTDOWN_BOUND
from tests.integration.helpers import http

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

JOBS = {"hello": "program: 'echo hello'\n"}


def _wait_for_job(api, job_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while job_id not in [j["job_id"] for j in api.get("/jobs").json()["jobs"]]:
        assert time.monotonic() < deadline, f"job {job_id} never appeared: watching stopped"
        time.sleep(0.1)


def _sigterm_exits_soon(daemon) -> float:
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        daemon.proc.wait(SHUTDOWN_BOUND + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"SIGTERM: still running after {SHUTDOWN_BOUND + 5}s\n{daemon.log_text()[-3000:]}")
    return time.monotonic() - started


def test_a_fifo_job_file_is_skipped_and_watching_and_sigterm_go_on(apsis_daemon):
    daemon = apsis_daemon(JOBS, config="watch_jobs: true\n")
    with http(daemon) as api:
        os.mkfifo(daemon.jobs_dir / "f.yaml")
        time.sleep(1.0)  # the watcher's debounce: the reload sees the FIFO
        daemon.write_job("later", "program: 'echo later'\n")
        _wait_for_job(api, "later")
        assert "f" not in [j["job_id"] for j in api.get("/jobs").json()["jobs"]]
    assert _sigterm_exits_soon(daemon) < SHUTDOWN_BOUND
    assert daemon.proc.returncode == 0

    # Starting with the FIFO there: a warning, and the other jobs load.
    daemon.start()
    with http(daemon) as api:
        _wait_for_job(api, "later")
    assert "f.yaml: warning: skipped: a FIFO, not a regular file" in daemon.log_text()
    assert _sigterm_exits_soon(daemon) < SHUTDOWN_BOUND


def test_check_job_warns_about_a_fifo_and_does_not_block(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "ok.yaml").write_text("program: 'echo ok'\n")
    os.mkfifo(jobs / "f.yaml")
    done = subprocess.run([sys.executable, "-m", "apsis_cli.apsisctl", "check-job", str(jobs)],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert f"{jobs / 'f.yaml'}: warning: skipped: a FIFO, not a regular file" in output


STUCK_DAEMON = """\
import runpy, sys, threading
fifo = sys.argv.pop(1)
# A worker stuck in a blocking open, as a FIFO or a hung network mount leaves one.
threading.Thread(target=lambda: open(fifo, "rb"), name="stuck-open").start()
sys.argv[0] = "apsisctl"
runpy.run_module("apsis_cli.apsisctl", run_name="__main__")
"""


def test_sigterm_ends_the_daemon_within_its_bound_whatever_a_thread_does(apsis_daemon):
    daemon = apsis_daemon(JOBS, start=False)
    fifo = daemon.root / "never-written"
    os.mkfifo(fifo)
    serve = daemon.command()
    daemon.command = lambda: [serve[0], "-c", STUCK_DAEMON, str(fifo), *serve[3:]]
    daemon.start()
    elapsed = _sigterm_exits_soon(daemon)
    assert SHUTDOWN_BOUND - 1 < elapsed < SHUTDOWN_BOUND + 5
    assert daemon.proc.returncode == 0  # everything was closed; only the thread hung
    assert "threads still busy: stuck-open" in daemon.log_text()
    # The lock went with the process: a new daemon starts on the database.
    daemon.command = lambda: serve
    daemon.start()
