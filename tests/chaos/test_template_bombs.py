"""Issue 11.8: a billion laughs in `.apsis-jobs.yaml` and template bombs, against a daemon.

A billion-laughs `globals` used in a command took check-job to 2 GB and blocked the
daemon's loop on `POST /runs` (`/alive` timed out, RSS > 2.5 GB); templates could reach
Python's internals (`''.__class__.__mro__`). Now the YAML is refused where it is written,
a render has a budget of time and size, and templates render in Jinja's sandbox.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import http, wait_run
from tests.unit.template.test_bombs import billion_laughs

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

JOBS = {
    "laughs": "program: {type: shell, command: 'echo {{ l4 }}{{ l4 }}{{ l4 }}{{ l4 }}{{ l4 }}'}\n",
    "loops": "program: {type: shell, command: "
             "'{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'}\n",
    "mro": "program: {type: shell, command: \"echo {{ ''.__class__.__mro__ }}\"}\n",
}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_billion_laughs_is_refused_and_bombs_make_error_runs(apsis_daemon):
    daemon = apsis_daemon(JOBS, jobs_config="globals:\n  " + billion_laughs().replace("\n", "\n  "))
    assert ".apsis-jobs.yaml:7:" in daemon.log_text() and "billion laughs" in daemon.log_text()
    check = subprocess.run([sys.executable, "-m", "apsis_cli.apsisctl", "check-job", str(daemon.jobs_dir)],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert check.returncode != 0 and "billion laughs" in check.stdout + check.stderr

    # Four levels (a quarter of a million values) load; printing them five times is too much.
    (daemon.jobs_dir / ".apsis-jobs.yaml").write_text(
        "globals:\n  " + billion_laughs(4).replace("\n", "\n  "))
    with http(daemon) as api:
        assert api.post("/control/reload").status_code == 200
        for job_id, message in (("laughs", "the result would be more than 1048576 characters"),
                                ("loops", "rendering takes more than 1 s"),
                                ("mro", "not allowed in a template: access to attribute '__class__'")):
            started = time.monotonic()
            response = api.post("/runs", json={"job_id": job_id})
            assert response.status_code == 201, response.text
            assert time.monotonic() - started < 5
            run = wait_run(api, response.json()["runs"][0]["run_id"])
            assert run["state"] == "error" and message in run["message"], run
            assert api.get("/alive", timeout=2).status_code == 200
    assert _rss_mb(daemon.pid) < 400
