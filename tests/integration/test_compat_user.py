"""`user:` without `host:` runs locally as that user through sudo, with that user's
environment (issue 12 item 9). A real second user, created here and removed after."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest

from .helpers import create, http, wait_run

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0, reason="creating a second user needs root"),
    pytest.mark.skipif(shutil.which("sudo") is None, reason="sudo is not installed (.ci/run installs it)"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is not available"),
]


@pytest.fixture
def other_user():
    name = "apsis" + secrets.token_hex(3)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def test_a_program_runs_as_its_user_with_that_users_environment(apsis_daemon, other_user):
    script = ('id -un; echo "$HOME $USER $LOGNAME $SHELL $PATH"; '
              'echo "$APSIS_JOB_ID $APSIS_ARG_DAY $GREETING"; pwd; env | grep -c ^DAEMON_SECRET; true')
    daemon = apsis_daemon({
        "as user": f"""\
params: [day]

program:
  type: program
  argv: [/bin/sh, -c, '{script}']
  user: {other_user}
  env:
    GREETING: hello
""",
        "service": f"""\
program:
  type: shell
  command: exec sleep 600
  user: {other_user}
""",
        "nobody known": """\
program:
  type: shell
  command: echo never
  user: no-such-user-here
""",
    }, env={"DAEMON_SECRET": "x"})
    with http(daemon) as api:
        [run] = create(api, "as user", args={"day": "mon"})
        done = wait_run(api, run["run_id"])
        assert done["state"] == "success", done
        out = api.get(f"/runs/{run['run_id']}/output/output").content.decode().splitlines()
        home = f"/home/{other_user}"
        assert out == [other_user,
                       f"{home} {other_user} {other_user} /bin/sh /usr/local/bin:/usr/bin:/bin",
                       "as user mon hello", home, "0"]

        # Stopping reaches the program under sudo: it ends, nothing of it is left.
        [svc] = create(api, "service")
        wait_run(api, svc["run_id"], {"running"})
        assert api.post(f"/runs/{svc['run_id']}/stop").status_code == 200
        assert wait_run(api, svc["run_id"])["state"] == "success"
        deadline = time.monotonic() + 5
        while subprocess.run(["pgrep", "-u", other_user], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the program outlived its stop"
            time.sleep(0.05)

        [bad] = create(api, "nobody known")
        bad = wait_run(api, bad["run_id"])
        assert bad["state"] == "error" and "no-such-user-here" in bad["message"], bad
