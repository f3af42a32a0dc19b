"""A first window made in parts: one that the database refuses after the daemon serves
is made again at a later tick, and runs missed while the daemon was down keep their
schedule's `catchup` rule there too."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time

import pytest

from apsis.lib.timefmt import format_time, parse_time
from tests.cli.helpers import apsisctl

from .helpers import http

TICK = "program: {type: no-op}\nschedule: {type: interval, interval: 1s, catchup: none}\n"
# Five minutes missed of four schedules (1 200 runs) fill the first part of the window
# (engine.core.WINDOW_PART); `zz` comes last, in a part of its own.
JOBS = {**{f"a{i}": TICK for i in range(4)}, "zz": TICK}
REFUSE_ZZ = ("CREATE TRIGGER refuse_zz BEFORE INSERT ON runs WHEN NEW.job_id = 'zz' "
             "BEGIN SELECT RAISE(ABORT, 'no room for zz'); END")


def _runs(api, job_id: str) -> list[dict]:
    return api.get("/runs", params={"job_id": job_id, "limit": 10000}).json()["runs"]


def _wait_for_log(daemon, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the daemon's log:\n{daemon.log_text()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.sqlite_only  # SQLite's write lock and a trigger provoke the failure
@pytest.mark.timeout(120)
def test_a_failed_part_of_the_first_window_keeps_the_catchup_of_its_missed_runs(apsis_daemon):
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    daemon = apsis_daemon(JOBS, start=False, config="schedule: {max_ahead: 5}\n",
                          args=["--since", format_time(since)])
    made = apsisctl(None, "db", "migrate", "--db", str(daemon.db))
    assert made.returncode == 0, made.stderr
    db = sqlite3.connect(daemon.db, isolation_level=None, check_same_thread=False)
    try:
        db.execute(REFUSE_ZZ)
        # The first part waits for this lock past the first second (FIRST_WINDOW_SECONDS),
        # so `zz`'s part is made while the daemon serves, and refused.
        db.execute("BEGIN IMMEDIATE")

        def release() -> None:
            try:
                _wait_for_log(daemon, "restoring 0 unfinished runs", 30)
                time.sleep(2)
            finally:
                db.execute("COMMIT")

        holder = threading.Thread(target=release)
        holder.start()
        up = dt.datetime.now(dt.UTC)
        daemon.start()
        holder.join()
        _wait_for_log(daemon, "task first-window failed", 30)
        db.execute("DROP TRIGGER refuse_zz")  # the next tick's window goes in
    finally:
        db.close()

    with http(daemon) as api:
        deadline = time.monotonic() + 60
        while not (zz := _runs(api, "zz")):
            assert time.monotonic() < deadline, "zz's runs were never made"
            time.sleep(0.2)
        time.sleep(1)  # what the missed runs became, had they been started
        zz, a0 = _runs(api, "zz"), _runs(api, "a0")
    for runs in (a0, zz):
        missed = [r for r in runs if parse_time(r["times"]["schedule"]) < up]
        assert len(missed) >= 290, len(missed)
        wrong = [(r["run_id"], r["times"]["schedule"], r["state"]) for r in missed
                 if r["state"] != "skipped" or "catchup: none" not in r["message"]]
        assert wrong == [], f"missed runs not skipped by `catchup: none`: {wrong[:5]}"
    times = [r["times"]["schedule"] for r in zz]
    assert len(times) == len(set(times)), "a run of zz was made twice"
