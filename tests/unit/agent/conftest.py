"""Fixtures that start real agents in tmp_path state dirs and leave nothing behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from apsis.agent.agent import _pid_alive, recorded_pids
from apsis.agent.client import AgentClient, local_connect_command

IDLE_TIMEOUT = 3.0


def server_pid(state_dir: Path) -> int | None:
    """The pid in the server lock file, if that process is an agent for this dir."""
    try:
        pid = int((state_dir / "server.lock").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(state_dir).encode() in cmdline else None


def kill_everything(state_dir: Path) -> None:
    """SIGKILL the programs still running (their whole groups), then the server."""
    for pid, start_ticks in recorded_pids(str(state_dir)):
        if _pid_alive(pid, start_ticks):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pid = server_pid(state_dir)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, None):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    # Deliberately long: unix socket paths are limited to ~100 bytes.
    d = tmp_path / ("state-" + "x" * 80)
    yield d
    kill_everything(d)


@pytest.fixture
async def client(state_dir: Path) -> AsyncIterator[AgentClient]:
    c = AgentClient(request_timeout=10, connect_timeout=10)
    await c.connect(local_connect_command(state_dir, idle_timeout=IDLE_TIMEOUT))
    yield c
    await c.close()
