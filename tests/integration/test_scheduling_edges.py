"""Scheduling edge cases against a real daemon (issue 16): command actions' environment,
jittered due times, a short interval's bounded future, true end times, runs left
`starting` by a stopped daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .helpers import create, http, wait_run

pytestmark = pytest.mark.timeout(120)


def wait_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} was not written within {timeout}s"
        time.sleep(0.05)
    return path.read_text()


def test_command_action_gets_the_run_in_its_environment(apsis_daemon, tmp_path):
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
              f"if k.startswith('APSIS_')}}, open({str(out)!r}, 'w')); print(file=open({str(out)!r}, 'a'))")
    job = ("program: {type: program, argv: [/bin/false]}\n"
           "action:\n"
           f"  - {{type: command, argv: [python3, -c, {json.dumps(script)}], if: {{states: [failure]}}}}\n")
    daemon = apsis_daemon({"notify": job})
    with http(daemon) as api:
        [run] = create(api, "notify")
        wait_run(api, run["run_id"])
        env = json.loads(wait_file(out))
    named = {k: env.get(k) for k in ("APSIS_RUN_ID", "APSIS_JOB_ID", "APSIS_STATE", "APSIS_URL")}
    assert named == {"APSIS_RUN_ID": run["run_id"], "APSIS_JOB_ID": "notify",
                   "APSIS_STATE": "failure", "APSIS_URL": daemon.url}
