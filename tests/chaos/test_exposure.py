"""What the daemon gives away: tokens in its log (issue 11.9), an open API (11.12).

Redaction matched the literal `token=`; `?%74oken=...` authenticates just the same
(the server decodes the name) and was logged in clear. `--insecure` on a network
address started without a word. A two-letter token was accepted; a job file that is
a symlink to anywhere (`/etc/...`, another user's jobs) was loaded and run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.integration.helpers import http

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

TOKEN = "s3cret-read-token-0123456789"
CONFIG = f"api:\n  tokens: {{{TOKEN}: read}}\n"


def test_percent_encoded_token_names_are_redacted_too(apsis_daemon):
    daemon = apsis_daemon({}, config=CONFIG, token=TOKEN)
    base = f"ws://127.0.0.1:{daemon.port}/api/v1/events"

    async def probe() -> int:
        for query in (f"?token={TOKEN}", f"?%74oken={TOKEN}", f"?since=0&%74%6F%6B%65%6E={TOKEN}"):
            async with connect(base + query, open_timeout=10):
                pass  # accepted: the server read each spelling as the token
        # Refused handshakes are logged with their path as well.
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"{base}?%74oken={TOKEN}&bogus=1", open_timeout=10):
                pass
        return info.value.response.status_code

    assert asyncio.run(probe()) == 400
    daemon.stop()
    log = daemon.log_text()
    assert "WebSocket /api/v1/events?%74oken=***" in log, log[-3000:]
    assert TOKEN not in log, [line for line in log.splitlines() if TOKEN in line]


def test_insecure_on_a_network_address_says_so_at_start(apsis_daemon):
    daemon = apsis_daemon({}, start=False, args=["--insecure"])
    daemon.bind = f"0.0.0.0:{daemon.port}"
    daemon.start()
    daemon.stop()
    warnings = [line for line in daemon.log_text().splitlines() if "WARNING" in line]
    assert any(f"--insecure: serving on 0.0.0.0:{daemon.port} without api.tokens and api.tls"
               in line for line in warnings), warnings


def test_short_tokens_are_refused_at_start(apsis_daemon):
    daemon = apsis_daemon({}, start=False, config="api:\n  tokens: {abc123: admin}\n")
    done = subprocess.run(daemon.command(), cwd=daemon.root, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "api.tokens: 1 token(s) shorter than 16 characters" in done.stderr, done.stderr
    assert "abc123" not in done.stderr and "Traceback" not in done.stderr


def test_a_job_file_symlinked_from_outside_the_jobs_directory_is_refused(apsis_daemon, tmp_path):
    secret = tmp_path / "elsewhere.yaml"
    secret.write_text("program: 'echo from outside'\n")
    daemon = apsis_daemon({"inside": "program: 'echo inside'\n"}, start=False)
    (daemon.jobs_dir / "evil.yaml").symlink_to(secret)
    (daemon.jobs_dir / "alias.yaml").symlink_to(daemon.jobs_dir / "inside.yaml")
    daemon.start()
    with http(daemon) as api:
        jobs = [j["job_id"] for j in api.get("/jobs").json()["jobs"]]
        assert "evil" not in jobs and {"inside", "alias"} <= set(jobs)
        assert api.post("/runs", json={"job_id": "evil"}).status_code == 404
    assert f"evil.yaml: refused: a symlink to {secret}, outside the jobs directory" in daemon.log_text()
    check = subprocess.run([sys.executable, "-m", "apsis_cli.apsisctl", "check-job", str(daemon.jobs_dir)],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert check.returncode != 0 and "outside the jobs directory" in check.stdout + check.stderr
