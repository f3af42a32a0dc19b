"""`apsisctl check-job` on templated program limits: the job loads, and a value that is
not valid once a schedule's args are bound is reported with the field and the value."""

import os
import subprocess
import sys

APSISCTL = [sys.executable, "-m", "apsis_cli.apsisctl"]


def test_templated_timeout_checked_per_schedule(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "t.yaml").write_text(
        "params: [t, sig]\n"
        "schedule:\n"
        "  - {type: interval, interval: 1h, args: {t: 5m, sig: INT}}\n"
        "  - {type: interval, interval: 1h, args: {t: abc, sig: INT}}\n"
        "program:\n"
        "  type: shell\n"
        "  command: sleep 1\n"
        "  timeout: {duration: '{{ t }}', signal: '{{ sig }}'}\n"
        "  stop: {grace_period: '{{ t }}'}\n")
    result = subprocess.run([*APSISCTL, "check-job", "jobs"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("jobs/t.yaml:")
    assert "program timeout.duration: not a duration: 'abc'" in line
    assert "schedule 2" in line
