"""What a new user meets in the CLI in the first hour (issue 13), against real servers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from .helpers import apsis


class _NotApsis(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        page = b"<!DOCTYPE html>\n<html><head><title>404</title></head>\n<body>" + b"x" * 2000 + b"</body></html>\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_apsis() -> Iterator[str]:
    """Another web server, on a free port (as on 5000 when `make run` moved the daemon)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotApsis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_apsis_is_one_line(not_apsis):
    result = apsis(not_apsis, "runs", timeout=20)
    assert result.returncode == 69, result
    assert result.stderr.startswith(f"error: not an Apsis daemon at {not_apsis} (it answered HTTP 404")
    assert "<html>" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


JOBS = {"ops/ok": "program: 'true'\n", "ops/bad": "program: 'false'\n",
        "market/load": "program: 'true'\n"}


def _finished(url: str, *jobs: str) -> list[str]:
    ids = []
    for job in jobs:
        result = apsis(url, "run", job, "--wait")
        ids.append(result.stderr.split()[0])
    return ids


def test_state_words_are_the_tuis(daemon, url):
    ok, bad = _finished(url, "ops/ok", "ops/bad")
    fail = apsis(url, "runs", "-s", "fail")
    assert fail.returncode == 0, fail.stderr
    assert bad in fail.stdout and ok not in fail.stdout
    finished = apsis(url, "runs", "-s", "finished").stdout
    assert bad in finished and ok in finished
    assert ok not in apsis(url, "runs", "-s", "failed").stdout
    unknown = apsis(url, "runs", "-s", "bogus")
    assert unknown.returncode == 2 and "groups: finished" in unknown.stderr


def test_a_folder_lists_its_jobs(daemon, url):
    result = apsis(url, "run", "ops")
    assert result.returncode == 2, result
    assert "'ops' is a folder of 2 job(s): ops/bad, ops/ok" in result.stderr
    assert "name one of them" in result.stderr
    assert "market/load" not in result.stderr
