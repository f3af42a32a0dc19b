"""`make run` (apsis_cli/devrun.py): life on the first screen, and a daemon that can be found."""

from __future__ import annotations

import json
import time

from apsis_cli.devrun import create_demo_runs, where

from .helpers import apsis
from .test_readme import demo_daemon


def test_a_fresh_demo_shows_finished_runs_within_seconds(apsis_daemon):
    daemon = demo_daemon(apsis_daemon)
    create_demo_runs(daemon.url)
    deadline = time.monotonic() + 30
    while True:
        listed = apsis(daemon.url, "runs", "-s", "success", "--json")
        jobs = {r["job_id"] for r in json.loads(listed.stdout)}
        # load-prices, and its successor, have happened, not only future heartbeats
        if {"market/load-prices", "market/compute-returns"} <= jobs or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"market/load-prices", "market/compute-returns", "ops/heartbeat"} <= jobs, listed.stdout


def test_a_moved_daemon_says_how_the_cli_finds_it():
    assert where("http://127.0.0.1:5000", 5000) == "daemon at http://127.0.0.1:5000 (log: apsis-dev.log)"
    moved = where("http://127.0.0.1:40123", 5000)
    assert moved.startswith("port 5000 is taken")
    assert moved.endswith("export APSIS_URL=http://127.0.0.1:40123")
