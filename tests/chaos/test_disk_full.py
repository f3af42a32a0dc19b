"""Issue 11.5: the database and the agent directory on a full disk (a 4 MiB tmpfs).

POSTs answered 500 "internal error: OperationalError", `serve` on a full disk printed a
traceback. Now a write refused for want of space is a 507 `disk_full` naming the database,
nothing of it is visible, the daemon works again as soon as space is back, and `serve`
says it in one line.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from tests.integration.helpers import assert_error, create, http, wait_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")]

JOBS = {"hello": "program: {type: shell, command: 'echo hello'}\n"}


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk) -> None:
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _free(disk) -> None:
    (disk / "filler").unlink()


def test_a_full_disk_is_a_507_naming_the_database_and_passes(apsis_daemon, small_disk):
    daemon = apsis_daemon(JOBS, start=False)
    daemon.db = small_disk / "apsis.db"  # and the agent's directory beside it
    daemon.start()
    with http(daemon) as api:
        first = create(api, "hello")[0]["run_id"]
        wait_run(api, first)
        _fill(small_disk)
        # SQLite may still have room in its WAL file: writes succeed (and are durable)
        # until it must grow. Far-future runs, so that only the database writes.
        later = {"job_id": "hello", "count": 50, "times": {"schedule": "2099-01-01T00:00:00Z"}}
        accepted: list[str] = []
        for _ in range(400):
            response = api.post("/runs", json=later)
            if response.status_code != 201:
                break
            accepted += [r["run_id"] for r in response.json()["runs"]]
        error = assert_error(response, 507, "disk_full")
        assert "disk full" in error["message"] and str(daemon.db) in error["message"], error
        assert_error(api.post("/runs", json={"job_id": "hello"}), 507, "disk_full")
        # No ghost: what the database refused is nowhere; what it accepted is all there.
        listed = [r["run_id"] for r in api.get("/runs", params={"limit": 10000}).json()["runs"]]
        assert sorted(listed) == sorted([first, *accepted])
        _free(small_disk)
        for run_id in accepted:
            api.post(f"/runs/{run_id}/skip")
        runs = create(api, "hello", count=3)
        for run in runs:
            assert wait_run(api, run["run_id"])["state"] == "success"
        assert not [r for r in api.get("/runs", params={"limit": 10000}).json()["runs"]
                    if r["state"] not in ("success", "skipped")]

    daemon.stop()
    _fill(small_disk)
    os.unlink(daemon.db)  # a database to create on a full disk
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(daemon.db) + suffix):
            os.unlink(str(daemon.db) + suffix)
    started = time.monotonic()
    done = subprocess.run(daemon.command(), cwd=daemon.root, env=daemon.env, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert time.monotonic() - started < 30
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "disk full" in line]
    assert lines and str(daemon.db) in lines[0], done.stderr[-2000:]
