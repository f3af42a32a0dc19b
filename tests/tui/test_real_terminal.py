"""`apsis tui` in a real terminal (tmux), as a person starts it: what Pilot never runs.

Pilot drives the app without a terminal, so start-up code that only runs in one (the
hangup handler, terminal modes) is tested here: the app starts, shows its runs live,
and quits on `q`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import create, http, wait_run

APSIS = str(Path(sys.executable).parent / "apsis")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          timeout=10, check=False)


def _screen(socket: str) -> str:
    return _tmux(socket, "capture-pane", "-p", "-t", "tui").stdout


def _wait_for(socket: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = _screen(socket)
        if text in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
        time.sleep(0.2)


def test_tui_starts_live_and_quits_in_a_real_terminal(apsis_daemon, tmp_path):
    daemon = apsis_daemon({"hello": "program: 'echo hi'\n"})
    with http(daemon) as api:
        [run] = create(api, "hello")
        wait_run(api, run["run_id"])
    socket = f"apsis-test-{os.getpid()}"
    env = f"APSIS_URL={daemon.url} XDG_STATE_HOME={tmp_path} TERM=xterm-256color"
    started = _tmux(socket, "new-session", "-d", "-s", "tui", "-x", "100", "-y", "30",
                    f"env {env} {APSIS} tui; echo EXITED $?; sleep 30")
    assert started.returncode == 0, started.stderr
    try:
        _wait_for(socket, run["run_id"])  # its runs are on the screen
        _wait_for(socket, "● live")  # and the event stream is open
        _tmux(socket, "send-keys", "-t", "tui", "q")
        assert "EXITED 0" in _wait_for(socket, "EXITED")
    finally:
        _tmux(socket, "kill-server")
