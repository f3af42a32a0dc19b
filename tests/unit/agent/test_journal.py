"""The state on disk: what a restarted agent makes of the journal and older run dirs.

These drive `Server` in-process, without a socket: `load()` is what a new server does
first, and the journal is written by hand to stand for an agent killed at any point.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apsis.agent import agent as agent_module
from apsis.agent.agent import (
    JOURNAL_NAME,
    STARTING_MESSAGE,
    Server,
    _proc_start_ticks,
    recorded_pids,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def open_server(state_dir: Path) -> Server:
    server = Server(str(state_dir), idle_timeout=1)
    assert server.acquire()
    server.load()
    return server


def close_server(server: Server) -> None:
    """Let go of the lock and the journal, as a killed agent would."""
    os.close(server._lock_fd)
    os.close(server._journal_fd)


def reap_all(server: Server) -> None:
    deadline = time.monotonic() + 10
    while server.by_pid and time.monotonic() < deadline:
        server._reap()
        time.sleep(0.01)
    assert not server.by_pid


def write_journal(state_dir: Path, *lines: dict | str) -> None:
    (state_dir / "runs").mkdir(parents=True, exist_ok=True)
    text = "".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines)
    (state_dir / JOURNAL_NAME).write_text(text)


def states(server: Server) -> dict[str, tuple]:
    return {
        p.proc_id: (p.record["state"], p.record["exit_code"], p.record["message"])
        for p in server.procs.values()
    }


def intent(proc_id: str, outputs: str = "combined") -> dict:
    return {
        "id": proc_id,
        "state": "starting",
        "argv": ["x"],
        "cwd": "/",
        "outputs": outputs,
        "start_time": "2024-01-01T00:00:00+00:00",
    }


def test_restart_replays_the_journal(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    state_dir = tmp_path / "state"
    live = {"pid": sleeper.pid, "start_ticks": _proc_start_ticks(sleeper.pid)}
    write_journal(
        state_dir,
        intent("done"),
        {"id": "done", "state": "running", "pid": dead_pid(), "start_ticks": None},
        {"id": "done", "state": "exited", "exit_code": 3, "end_time": "t", "pid": 1},
        intent("alive", "split"),
        {"id": "alive", "state": "running", **live},
        intent("gone"),
        {"id": "gone", "state": "running", "pid": dead_pid(), "start_ticks": None},
        intent("unsure"),  # the agent died between the intent and the spawn's pid
        intent("cleaned"),
        {"id": "cleaned", "state": "running", "pid": dead_pid()},
        {"id": "cleaned", "clean": True},
        'not json\n{"id": "torn", "state": "sta',  # a write cut short by the kill
    )
    (state_dir / "runs" / "done.output").write_bytes(b"kept")
    (state_dir / "runs" / "orphan.output").write_bytes(b"")  # spooled, never journaled

    server = open_server(state_dir)
    assert states(server) == {
        "done": ("exited", 3, None),
        "alive": ("running", None, None),
        "gone": ("lost", None, server._lost_message()),
        "unsure": ("error", None, STARTING_MESSAGE),
    }
    assert list(server.procs["alive"].record["outputs"]) == ["stdout", "stderr"]
    assert server.procs["alive"].adopted and "alive" in server.adopted
    assert (state_dir / "runs" / "done.output").read_bytes() == b"kept"
    assert not (state_dir / "runs" / "orphan.output").exists()
    assert recorded_pids(str(state_dir)) == [(sleeper.pid, live["start_ticks"])]

    # The verdicts were journaled (after the torn line, on a line of their own), so
    # the next agent reads the same; `unsure` is never retried.
    with pytest.raises(agent_module.RequestError) as exc:
        server.op_start({"proc_id": "unsure", "argv": ["true"]})
    assert exc.value.code == "exists"
    close_server(server)
    again = open_server(state_dir)
    assert states(again) == states(server)
    close_server(again)


def test_clean_forgets_across_restarts(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    server = open_server(state_dir)
    reply = server.op_start({"proc_id": "r1", "argv": ["sh", "-c", "printf hi"]})
    spool = Path(reply["proc"]["outputs"]["output"])
    reap_all(server)
    assert states(server)["r1"] == ("exited", 0, None)
    assert spool.read_bytes() == b"hi"
    close_server(server)

    server = open_server(state_dir)
    assert states(server)["r1"] == ("exited", 0, None)
    server.op_clean({"proc_id": "r1"})
    assert not spool.exists()
    close_server(server)
    server = open_server(state_dir)
    assert server.procs == {}
    # Cleaned, the id may be used again.
    server.op_start({"proc_id": "r1", "argv": ["true"]})
    reap_all(server)
    close_server(server)


def test_legacy_run_dirs_are_read_and_cleaned(tmp_path: Path) -> None:
    """Run dirs left by an agent from before the journal still report and clean."""
    runs = tmp_path / "state" / "runs"
    spec = {"argv": ["x"], "env": {}, "cwd": "/", "outputs": "combined", "start_time": "t0"}
    for name, files in {
        "ended": {
            "spec.json": spec,
            "pid.json": {"pid": 1},
            "status.json": {"state": "exited", "exit_code": 0, "end_time": "t1", "pid": 1},
        },
        "died": {"spec.json": spec, "pid.json": {"pid": dead_pid(), "start_ticks": None}},
        "nospec": {},
    }.items():
        (runs / name).mkdir(parents=True)
        for file, obj in files.items():
            (runs / name / file).write_text(json.dumps(obj))
    (runs / "ended" / "output").write_bytes(b"old output")

    server = open_server(tmp_path / "state")
    assert states(server) == {
        "ended": ("exited", 0, None),
        "died": ("lost", None, server._lost_message()),
    }
    assert not (runs / "nospec").exists()  # the spec goes before the spawn: nothing ran
    assert json.loads((runs / "died" / "status.json").read_text())["state"] == "lost"
    assert server.op_read({"proc_id": "ended"})["length"] == len(b"old output")
    server.op_clean({"proc_id": "ended"})
    assert not (runs / "ended").exists()
    close_server(server)


def test_the_journal_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "COMPACT_MIN_LINES", 20)
    state_dir = tmp_path / "state"
    server = open_server(state_dir)
    server.op_start({"proc_id": "keep", "argv": ["true"]})
    for i in range(12):
        server.op_start({"proc_id": f"r{i}", "argv": ["true"]})
    reap_all(server)
    for i in range(12):
        server.op_clean({"proc_id": f"r{i}"})
    journal = state_dir / JOURNAL_NAME
    assert len(journal.read_text().splitlines()) < 20
    server.op_start({"proc_id": "after", "argv": ["true"]})  # appends to the new file
    reap_all(server)
    expected = {pid: state[0] for pid, state in states(server).items()}
    close_server(server)
    server = open_server(state_dir)
    assert {pid: state[0] for pid, state in states(server).items()} == expected
    assert set(expected) == {"keep", "after"}
    close_server(server)
