"""Issue 11.2: a second daemon on another name of the same database file is refused.

The lock was a `<database>.lock` file beside the path given, so a symlink or a hard
link to the database let a second daemon start on it, and the two then broke each
other's writes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import free_port
from tests.integration.helpers import create, http, wait_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

JOBS = {"hello": "program: 'echo hello'\n"}


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_second_daemon_on_another_name_of_the_database_is_refused(apsis_daemon, link):
    daemon = apsis_daemon(JOBS)
    alias = daemon.root / "elsewhere" / "alias.db"
    alias.parent.mkdir()
    if link == "symlink":
        alias.symlink_to(daemon.db)
    else:
        os.link(daemon.db, alias)
    second = subprocess.run(
        [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(daemon.jobs_dir),
         "--db", str(alias), "--bind", f"127.0.0.1:{free_port()}"],
        cwd=daemon.root, env=daemon.env, capture_output=True, text=True, timeout=20,
        stdin=subprocess.DEVNULL)
    assert second.returncode != 0, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: database ")
    assert "in use by another Apsis daemon" in lines[0]
    assert f"pid {daemon.pid}" in lines[0]
    if link == "symlink":
        assert f"locked as {daemon.db}" in lines[0]
    # The first daemon never noticed.
    with http(daemon) as api:
        [run] = create(api, "hello")
        assert wait_run(api, run["run_id"])["state"] == "success"
