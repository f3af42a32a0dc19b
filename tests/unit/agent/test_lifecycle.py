"""The agent's life: surviving killed clients and connections, idling out, one server."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apsis.agent import agent as agent_module
from apsis.agent.agent import _pid_alive
from apsis.agent.client import (
    AGENT_PATH,
    START_WINDOW,
    AgentClient,
    AgentConnectionError,
    AgentError,
    bootstrap_command,
    local_connect_command,
    ssh_connect_command,
)

from .conftest import server_pid, wait_dead
from .helpers import PY, wait_exit

pytestmark = pytest.mark.timeout(25)


async def connect(state_dir: Path, idle_timeout: float = 3.0) -> AgentClient:
    client = AgentClient(request_timeout=10, connect_timeout=10)
    await client.connect(local_connect_command(state_dir, idle_timeout=idle_timeout))
    return client


@contextlib.asynccontextmanager
async def silent_agent(state_dir: Path) -> AsyncIterator[tuple[AgentClient, int]]:
    """A client, and the pid of its agent stopped (SIGSTOP: a host gone silent); the
    agent goes on (SIGCONT, again if the test did already) and the client is closed."""
    client = await connect(state_dir)
    pid = server_pid(state_dir)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield client, pid
    finally:
        os.kill(pid, signal.SIGCONT)
        await client.close()


async def test_killed_connect_process_reconnects_and_learns_the_exit(
    client: AgentClient,
) -> None:
    await client.start(["sh", "-c", "echo one; sleep 0.6; echo two"], proc_id="r1")
    agent_pid = client.hello["pid"]
    assert client.connect_pid is not None
    os.kill(client.connect_pid, signal.SIGKILL)
    # Requests wait for the reconnection; the exit arrives live or replayed.
    assert (await client.ping())["pid"] == agent_pid
    done = await wait_exit(client, "r1")
    assert done.exit_code == 0
    assert await client.read_all("r1") == b"one\ntwo\n"
    assert client.hello["pid"] == agent_pid


async def test_killed_client_then_a_new_client_learns_the_exit(state_dir: Path) -> None:
    """The daemon dies with SIGKILL mid-run; the next daemon gets exit and output."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from apsis.agent.client import AgentClient, local_connect_command
        async def main():
            c = AgentClient()
            await c.connect(local_connect_command({str(state_dir)!r}, idle_timeout=3))
            await c.start(["sh", "-c", "printf a; sleep 0.8; printf b"], proc_id="r1")
            print("started", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    daemon = await asyncio.create_subprocess_exec(PY, "-c", script, stdout=subprocess.PIPE)
    try:
        assert daemon.stdout is not None
        assert await daemon.stdout.readline() == b"started\n"
    finally:
        daemon.kill()
        await daemon.wait()
    client = await connect(state_dir)
    try:
        status = await client.status("r1")
        assert status.state == "running"
        done = await wait_exit(client, "r1")
        assert (done.state, done.exit_code) == ("exited", 0)
        assert Path(done.outputs["output"]).read_bytes() == b"ab"
    finally:
        await client.close()


async def test_exit_while_nobody_connected_is_replayed_on_connect(state_dir: Path) -> None:
    client = await connect(state_dir)
    await client.start(["sh", "-c", "sleep 0.3; exit 7"], proc_id="r1")
    await client.close()
    await asyncio.sleep(0.6)
    client = await connect(state_dir)
    try:
        done = await wait_exit(client, "r1")
        assert done.exit_code == 7
        assert {p.proc_id: p.exit_code for p in await client.list()} == {"r1": 7}
    finally:
        await client.close()


async def test_idle_agent_exits_and_a_later_one_knows_past_runs(state_dir: Path) -> None:
    client = await connect(state_dir, idle_timeout=0.3)
    pid = client.hello["pid"]
    await client.start(["sh", "-c", "sleep 0.8; exit 4"], proc_id="r1")
    await client.close()
    # Not idle while its program runs...
    await asyncio.sleep(0.5)
    assert _pid_alive(pid, None)
    # ...then gone soon after it ends, leaving no socket behind.
    assert await asyncio.to_thread(wait_dead, pid, 5.0)
    assert not (state_dir / "agent.sock").exists()
    client = await connect(state_dir, idle_timeout=0.3)
    try:
        assert client.hello["pid"] != pid
        assert (await client.status("r1")).exit_code == 4
    finally:
        await client.close()


def test_racing_connects_share_one_server(state_dir: Path) -> None:
    cmd = local_connect_command(state_dir, idle_timeout=2)
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(5)]
    try:
        hellos = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(5)
    assert len({h["pid"] for h in hellos}) == 1
    assert [h["event"] for h in hellos] == ["hello"] * 5


async def test_killed_agent_is_replaced_and_adopts_running_programs(
    client: AgentClient,
) -> None:
    await client.start(["sleep", "1"], proc_id="r1")
    old_agent = client.hello["pid"]
    os.kill(old_agent, signal.SIGKILL)
    # The client reconnects, which starts a new agent; it finds r1 still running.
    status = await client.status("r1")
    assert client.hello["pid"] != old_agent
    assert status.state == "running"
    # It cannot wait() for a process it did not start: the end is known, the code not.
    done = await wait_exit(client, "r1")
    assert done.state == "lost" and done.exit_code is None
    assert "exit status is unknown" in (done.message or "")


async def test_a_burst_of_starts_is_adopted_whole_by_the_next_agent(
    client: AgentClient,
) -> None:
    """The agent records pids after a batch of spawns, before the replies: an agent
    killed right after answering leaves every started program to be adopted, none
    reported as one that may or may not have run."""
    ids = [f"r{i}" for i in range(40)]
    await asyncio.gather(*(client.start(["sleep", "5"], proc_id=i) for i in ids))
    old_agent = client.hello["pid"]
    os.kill(old_agent, signal.SIGKILL)
    statuses = [await client.status(i) for i in ids]
    assert client.hello["pid"] != old_agent
    assert [(s.proc_id, s.state) for s in statuses] == [(i, "running") for i in ids]
    for i in ids:
        await client.signal(i, "SIGKILL")


async def test_connect_failure_says_why(tmp_path: Path) -> None:
    client = AgentClient(connect_timeout=5)
    with pytest.raises(AgentConnectionError) as exc:
        await client.connect([PY, "-c", "import sys; sys.exit('ssh: no route to host')"])
    assert "no route to host" in str(exc.value)


async def test_bootstrap_loader_runs_the_agent_from_stdin(state_dir: Path) -> None:
    """What ssh would run remotely, run here: the source travels on stdin."""
    argv, preamble = bootstrap_command(str(state_dir), python=PY, idle_timeout=2)
    client = AgentClient(connect_timeout=10)
    await client.connect(argv, preamble)
    try:
        await client.start(["sh", "-c", "echo remote"], proc_id="r1")
        assert (await wait_exit(client, "r1")).exit_code == 0
        assert await client.read_all("r1") == b"remote\n"
        # The server runs from the copy the loader left in the state dir.
        assert (state_dir / "agent.py").read_bytes() == AGENT_PATH.read_bytes()
    finally:
        await client.close()


def test_ssh_command_quotes_the_remote_command() -> None:
    argv, preamble = ssh_connect_command("box", user="ops", idle_timeout=5)
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert argv[-2] == "box" and "-l" in argv
    remote = shlex.split(argv[-1])
    assert remote[:2] == ["python3", "-c"]
    assert remote[3] == str(len(preamble))
    assert remote[4:] == ["connect", "--state-dir", "~/.apsis/agent", "--idle-timeout", "5.0"]
    with pytest.raises(ValueError):
        ssh_connect_command("-oProxyCommand=evil")


def test_agent_is_stdlib_only_and_python39_syntax() -> None:
    source = AGENT_PATH.read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
    assert agent_module.__name__  # importable as a module too


def test_server_pid_helper_ignores_other_dirs(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "server.lock").write_text(f"{os.getpid()}\n")
    assert server_pid(state_dir) is None


def test_piped_requests_get_their_replies_before_the_connection_closes(
    state_dir: Path,
) -> None:
    """`echo request | agent.py connect`: a handy way to look at an agent by hand."""
    requests = b'{"id": 1, "op": "ping"}\n{"id": 2, "op": "list"}\n{"op": "nope"}\n'
    out = subprocess.run(
        local_connect_command(state_dir, idle_timeout=1),
        input=requests,
        capture_output=True,
        timeout=10,
        check=True,
    ).stdout
    replies = [json.loads(line) for line in out.splitlines()]
    assert replies[0]["event"] == "hello"
    assert [(r["id"], r["ok"]) for r in replies[1:]] == [(1, True), (2, True), (None, False)]
    assert replies[2]["procs"] == []
    assert replies[3]["code"] == "bad_request"


async def test_an_agent_speaking_another_protocol_is_refused() -> None:
    fake = 'import json; print(json.dumps({"event": "hello", "protocol": 99}), flush=True)'
    client = AgentClient(connect_timeout=5)
    with pytest.raises(AgentConnectionError) as exc:
        await client.connect([PY, "-c", fake])
    assert "protocol 99" in str(exc.value)


async def test_ssh_command_through_a_shell(state_dir: Path) -> None:
    """sshd hands the remote command to the login shell: a stand-in `ssh` does the same."""
    fake_ssh = ("sh", "-c", 'shift $(($# - 1)); exec sh -c "$1"', "fake-ssh")
    argv, preamble = ssh_connect_command(
        "box", state_dir=str(state_dir), python=PY, idle_timeout=2, ssh=fake_ssh
    )
    client = AgentClient(connect_timeout=10)
    await client.connect(argv, preamble)
    try:
        await client.start(["printf", "%s", 'it\'s "quoted"'], proc_id="r1")
        await wait_exit(client, "r1")
        assert await client.read_all("r1") == b'it\'s "quoted"'
    finally:
        await client.close()


async def test_starts_to_a_silent_agent_fail_in_their_timeout(state_dir: Path) -> None:
    """More starts than the client's window, to an agent that stopped answering (a host
    gone silent): each fails in its own timeout, waiting for a place included, not one
    window after another; a start that was never sent says so."""
    async with silent_agent(state_dir) as (client, _):
        loop = asyncio.get_running_loop()
        ended: dict[str, float] = {}

        async def start(proc_id: str, timeout: float) -> object:
            try:
                return await client.start(["true"], proc_id=proc_id, timeout=timeout)
            finally:
                ended[proc_id] = loop.time()

        # The window's starts wait 3 s for their answers; the 10 beyond it give up after
        # 1 s, still waiting for a place: in their own timeout, not after the window's.
        window = [start(f"w{i}", 3) for i in range(START_WINDOW)]
        beyond = [start(f"b{i}", 1) for i in range(10)]
        results = await asyncio.gather(*window, *beyond, return_exceptions=True)
        assert all(isinstance(r, AgentError) and r.code == "timeout" for r in results)
        assert all("not sent" in str(r) for r in results[START_WINDOW:])
        assert not any("not sent" in str(r) for r in results[:START_WINDOW])
        assert max(ended[f"b{i}"] for i in range(10)) < min(
            ended[f"w{i}"] for i in range(START_WINDOW))


async def test_a_short_timeout_sent_after_a_long_one_fails_first(state_dir: Path) -> None:
    """Each request fails in its own timeout, whatever the others': a quick one sent after
    a patient one to an agent that stopped answering gives up first, and the patient one
    still gets its answer once the agent answers again."""
    async with silent_agent(state_dir) as (client, pid):
        loop = asyncio.get_running_loop()
        patient = asyncio.ensure_future(client.start(["true"], proc_id="slow", timeout=10))
        await asyncio.sleep(0.1)
        t0 = loop.time()
        with pytest.raises(AgentError, match="no reply to 'start' in 0\\.") as info:
            await client.start(["true"], proc_id="quick", timeout=0.5)
        assert info.value.code == "timeout" and 0.4 < loop.time() - t0 < 3
        assert not patient.done()
        os.kill(pid, signal.SIGCONT)
        assert (await patient).state in ("running", "exited")
