"""Starting programs: exit statuses, outputs, environment and start failures."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from apsis.agent.agent import SPARE_RESERVE, _pid_alive
from apsis.agent.client import AGENT_PATH, AgentClient, AgentError, local_connect_command

from .helpers import PY, wait_exit

pytestmark = pytest.mark.timeout(20)

# Not UTF-8, with ANSI colour codes, a NUL and a CR: spools keep bytes as they are.
OUT1 = b"\x1b[31mred\x1b[0m \xc3\xa9\n"
ERR = b"\xff\xfe not utf-8\r\n"
OUT2 = b"\x00tail without newline"
WRITER = f"import os\nos.write(1, {OUT1!r})\nos.write(2, {ERR!r})\nos.write(1, {OUT2!r})\n"


async def test_exit_zero(client: AgentClient) -> None:
    info = await client.start(["true"], proc_id="r1")
    assert info.state == "running" and info.pid
    done = await wait_exit(client, "r1")
    assert (done.state, done.exit_code, done.signal) == ("exited", 0, None)
    assert done.end_time
    assert (await client.status("r1")).exit_code == 0


async def test_exit_failure_code(client: AgentClient) -> None:
    await client.start(["sh", "-c", "exit 3"], proc_id="r1")
    done = await wait_exit(client, "r1")
    assert (done.exit_code, done.signal) == (3, None)


async def test_signal_death_recorded_as_signal(client: AgentClient) -> None:
    await client.start(["sleep", "30"], proc_id="r1")
    await client.signal("r1", "TERM")
    done = await wait_exit(client, "r1")
    assert (done.state, done.exit_code, done.signal) == ("exited", None, "SIGTERM")
    with pytest.raises(AgentError) as exc:
        await client.signal("r1", "SIGKILL")
    assert exc.value.code == "not_running"


async def test_bad_signal(client: AgentClient) -> None:
    await client.start(["sleep", "30"], proc_id="r1")
    with pytest.raises(AgentError) as exc:
        await client.signal("r1", "SIGNOPE")
    assert exc.value.code == "bad_request"
    await client.signal("r1", 9)
    assert (await wait_exit(client, "r1")).signal == "SIGKILL"


async def test_combined_output_byte_exact(client: AgentClient) -> None:
    info = await client.start([PY, "-c", WRITER], proc_id="r1")
    assert list(info.outputs) == ["output"]
    await wait_exit(client, "r1")
    assert Path(info.outputs["output"]).read_bytes() == OUT1 + ERR + OUT2
    assert await client.read_all("r1") == OUT1 + ERR + OUT2


async def test_split_outputs_byte_exact(client: AgentClient) -> None:
    info = await client.start([PY, "-c", WRITER], proc_id="r1", outputs="split")
    assert list(info.outputs) == ["stdout", "stderr"]
    # The sizes at the end: the daemon stores an output seen empty without opening it.
    assert (await wait_exit(client, "r1")).lengths == {"stdout": len(OUT1 + OUT2), "stderr": len(ERR)}
    await client.start(["true"], proc_id="r2", outputs="split")
    assert (await wait_exit(client, "r2")).lengths == {"stdout": 0, "stderr": 0}
    assert Path(info.outputs["stdout"]).read_bytes() == OUT1 + OUT2
    assert Path(info.outputs["stderr"]).read_bytes() == ERR
    assert await client.read_all("r1", "stderr") == ERR
    with pytest.raises(AgentError) as exc:
        await client.read("r1", "output")
    assert exc.value.code == "bad_request"


async def test_read_with_offsets(client: AgentClient) -> None:
    await client.start(["printf", "0123456789"], proc_id="r1")
    await wait_exit(client, "r1")
    chunk = await client.read("r1", offset=3, max_bytes=4)
    assert (chunk.data, chunk.offset, chunk.length, chunk.final) == (b"3456", 3, 10, True)
    assert (await client.read("r1", offset=7)).data == b"789"
    assert (await client.read("r1", offset=50)).data == b""
    assert await client.read_all("r1", offset=8) == b"89"


async def test_read_while_running_is_not_final(client: AgentClient) -> None:
    await client.start(["sh", "-c", "printf abc; exec sleep 30"], proc_id="r1")
    for _ in range(200):
        chunk = await client.read("r1")
        if chunk.length == 3:
            break
        await asyncio.sleep(0.01)
    assert (chunk.data, chunk.final) == (b"abc", False)


async def test_no_such_program_is_an_error_reply(client: AgentClient) -> None:
    with pytest.raises(AgentError) as exc:
        await client.start(["/no/such/program", "x"], proc_id="r1")
    assert exc.value.code == "spawn_failed"
    assert "No such file" in exc.value.message
    assert exc.value.proc is not None and exc.value.proc.state == "error"
    # Recorded, so a daemon that crashed before the reply still learns it.
    status = await client.status("r1")
    assert status.state == "error" and "No such file" in (status.message or "")


async def test_not_executable_is_an_error_reply(client: AgentClient, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(AgentError) as exc:
        await client.start([str(script)], proc_id="r1")
    assert exc.value.code == "spawn_failed"
    assert "Permission denied" in exc.value.message


@pytest.mark.parametrize("what", ["missing", "file"])
async def test_bad_cwd_is_an_error_reply(client: AgentClient, tmp_path: Path, what: str) -> None:
    cwd = tmp_path / "nope"
    if what == "file":
        cwd.write_text("")
    with pytest.raises(AgentError) as exc:
        await client.start(["true"], proc_id="r1", cwd=str(cwd))
    assert exc.value.code == "spawn_failed"
    assert str(cwd) in exc.value.message


async def test_cwd_and_default_cwd(client: AgentClient, tmp_path: Path) -> None:
    info = await client.start(["pwd"], proc_id="r1", cwd=str(tmp_path))
    await wait_exit(client, "r1")
    assert Path(info.outputs["output"]).read_text().strip() == str(tmp_path)
    info = await client.start(["pwd"], proc_id="r2")
    await wait_exit(client, "r2")
    assert Path(info.outputs["output"]).read_text().strip() == os.path.expanduser("~")


async def test_env_given_and_inherited(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apsis.agent.client import local_connect_command

    monkeypatch.setenv("AGENT_TEST_INHERITED", "from-daemon")
    async with AgentClient() as client:
        await client.connect(local_connect_command(state_dir, idle_timeout=2))
        script = 'printf "%s|%s|%s" "$APSIS_RUN_ID" "$APSIS_ARG_DATE" "$AGENT_TEST_INHERITED"'
        info = await client.start(
            ["sh", "-c", script],
            proc_id="r1",
            env={"APSIS_RUN_ID": "r1", "APSIS_ARG_DATE": "2024-01-02"},
        )
        await wait_exit(client, "r1")
        assert Path(info.outputs["output"]).read_text() == "r1|2024-01-02|from-daemon"


async def test_signal_reaches_the_whole_process_group(client: AgentClient, tmp_path: Path) -> None:
    gc_file = tmp_path / "grandchild.pid"
    await client.start(["sh", "-c", f'sleep 30 & echo $! > "{gc_file}"; wait'], proc_id="r1")
    for _ in range(500):
        if gc_file.exists() and gc_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    grandchild = int(gc_file.read_text())
    assert _pid_alive(grandchild, None)
    await client.signal("r1", "SIGTERM")
    assert (await wait_exit(client, "r1")).signal == "SIGTERM"
    for _ in range(200):
        if not _pid_alive(grandchild, None):
            break
        await asyncio.sleep(0.01)
    assert not _pid_alive(grandchild, None)


async def test_same_proc_id_never_starts_twice(client: AgentClient, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    await client.start(["sh", "-c", f'echo x >> "{marker}"'], proc_id="r1")
    with pytest.raises(AgentError) as exc:
        await client.start(["sh", "-c", f'echo x >> "{marker}"'], proc_id="r1")
    assert exc.value.code == "exists"
    await wait_exit(client, "r1")
    assert marker.read_text() == "x\n"


async def test_bad_requests(client: AgentClient) -> None:
    for kwargs in ({"proc_id": "../etc"}, {"proc_id": ".hidden"}):
        with pytest.raises(AgentError) as exc:
            await client.start(["true"], **kwargs)
        assert exc.value.code == "bad_request"
    with pytest.raises(AgentError) as exc:
        await client.start([])
    assert exc.value.code == "bad_request"
    with pytest.raises(AgentError) as exc:
        await client.status("nope")
    assert exc.value.code == "not_found"


async def test_random_proc_id(client: AgentClient) -> None:
    info = await client.start(["true"])
    assert info.proc_id
    assert (await wait_exit(client, info.proc_id)).exit_code == 0


async def test_clean_and_list(client: AgentClient) -> None:
    await client.start(["sleep", "30"], proc_id="long")
    await client.start(["true"], proc_id="short")
    await wait_exit(client, "short")
    procs = {p.proc_id: p.state for p in await client.list()}
    assert procs == {"long": "running", "short": "exited"}
    with pytest.raises(AgentError) as exc:
        await client.clean("long")
    assert exc.value.code == "running"
    spool = Path((await client.status("short")).outputs["output"])
    assert spool.exists()
    await client.clean("short")
    assert not spool.exists()
    assert [p.proc_id for p in await client.list()] == ["long"]
    await client.signal("long", "KILL")
    await wait_exit(client, "long")


@pytest.mark.parametrize("agent", ["current", "without clean_many"])
async def test_cleans_asked_together(state_dir: Path, tmp_path: Path, agent: str) -> None:
    """Cleans asked in one turn go in one request: each finished process is cleaned, a
    running one fails alone, an unknown id is taken as cleaned already. An agent from
    before `clean_many` (a remote host's that has not exited yet) is asked one by one."""
    command = local_connect_command(state_dir, idle_timeout=3)
    if agent != "current":
        old = tmp_path / "agent.py"
        old.write_text(AGENT_PATH.read_text().replace('"clean_many": op_clean_many,', ""))
        assert '"clean_many"' not in old.read_text()
        command[1] = str(old)
    client = AgentClient(request_timeout=10, connect_timeout=10)
    await client.connect(command)
    try:
        await client.start(["sleep", "30"], proc_id="long")
        spools = []
        for i in range(3):
            spools.append(Path((await client.start(["printf", "x"], proc_id=f"s{i}")).outputs["output"]))
            await wait_exit(client, f"s{i}")
        results = await asyncio.gather(*(client.clean(p) for p in ["s0", "long", "s1", "gone", "s2"]),
                                       return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["NoneType", "AgentError", "NoneType",
                                                        "NoneType", "NoneType"]
        assert isinstance(results[1], AgentError) and results[1].code == "running"
        assert not any(p.exists() for p in spools)
        assert [p.proc_id for p in await client.list()] == ["long"]
        await client.signal("long", "KILL")
        await wait_exit(client, "long")
    finally:
        await client.close()


async def test_env_without_inheriting(client: AgentClient) -> None:
    info = await client.start(
        ["/bin/sh", "-c", 'printf "%s|%s" "$ONLY" "${HOME-unset}"'],
        proc_id="r1",
        env={"ONLY": "this"},
        inherit_env=False,
    )
    await wait_exit(client, "r1")
    assert Path(info.outputs["output"]).read_text() == "this|unset"



# The descriptors a program has open (the listing's own is closed by the time they are
# looked at).
OPEN_FDS = (
    "import os\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "    except OSError:\n"
    "        return False\n"
    "    return True\n"
    "print([fd for fd in [int(n) for n in os.listdir('/dev/fd')] if is_open(fd)])\n"
)


async def test_program_inherits_stdio_only_and_no_ignored_signal(state_dir: Path) -> None:
    """Even from a server that inherited a descriptor itself (run in the foreground), a
    program gets stdin, stdout and stderr only; and no signal ignored: the server (in
    Python) ignores SIGPIPE, and a program that found it so would not die of writing
    to a closed pipe. A server started by `nohup`, or in the background of a script,
    ignores SIGHUP, SIGINT and SIGQUIT: its programs do not (or a timeout's SIGINT, or a
    stop's SIGHUP, would do nothing)."""
    from apsis.agent import agent as agent_module

    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    state_dir.mkdir(parents=True)
    argv = [PY, agent_module.__file__, "serve", "--state-dir", str(state_dir), "--idle-timeout", "3"]
    ignoring = ("import os, signal, sys\n"
                "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):\n"
                "    signal.signal(sig, signal.SIG_IGN)\n"
                "os.execv(sys.argv[1], sys.argv[1:])\n")
    server = await asyncio.create_subprocess_exec(PY, "-c", ignoring, *argv, pass_fds=[write_end])
    os.close(write_end)
    try:
        for _ in range(500):
            if (state_dir / "agent.sock").exists():
                break
            await asyncio.sleep(0.01)
        async with AgentClient(request_timeout=10) as client:
            await client.connect(local_connect_command(state_dir, idle_timeout=3))
            assert client.hello["pid"] == server.pid
            fds = await client.start([PY, "-c", OPEN_FDS], proc_id="fds")
            assert (await wait_exit(client, "fds")).exit_code == 0
            ign = await client.start(["grep", "SigIgn", "/proc/self/status"], proc_id="ign")
            assert (await wait_exit(client, "ign")).exit_code == 0
        assert Path(fds.outputs["output"]).read_text() == "[0, 1, 2]\n"
        ignored = int(Path(ign.outputs["output"]).read_text().split()[1], 16)
        assert ignored & (1 << 31) - 1 == 0  # signals 1-31 (glibc keeps 32 and 33 to itself)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
        os.close(read_end)


async def test_program_found_in_its_own_path(client: AgentClient, tmp_path: Path) -> None:
    """A bare name is looked up in the PATH the program gets, not the agent's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "apsis-test-tool"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    info = await client.start(["apsis-test-tool"], proc_id="r1",
                              env={"PATH": f"{tmp_path / 'none'}:{bin_dir}"})
    assert (await wait_exit(client, "r1")).exit_code == 0
    assert Path(info.outputs["output"]).read_text() == "found\n"
    tool.chmod(0o644)
    with pytest.raises(AgentError) as exc:
        await client.start(["apsis-test-tool"], proc_id="r2", env={"PATH": str(bin_dir)})
    assert exc.value.code == "spawn_failed" and "Permission denied" in exc.value.message
    with pytest.raises(AgentError) as exc:
        await client.start(["apsis-test-tool"], proc_id="r3")  # not in the agent's PATH
    assert exc.value.code == "spawn_failed" and "No such file" in exc.value.message


async def test_spool_files_reused_only_when_empty_and_closed(client: AgentClient) -> None:
    """A cleaned empty spool is renamed into place for a later start (no new file to
    create), unless something still has it open: a reader (or a grandchild of the
    program) must never see a later run's output."""
    quiet = await client.start(["true"], proc_id="quiet")
    await wait_exit(client, "quiet")
    inode = os.stat(quiet.outputs["output"]).st_ino
    await client.clean("quiet")
    reused = await client.start(["printf", "mine"], proc_id="reused")
    await wait_exit(client, "reused")
    assert os.stat(reused.outputs["output"]).st_ino == inode
    assert Path(reused.outputs["output"]).read_bytes() == b"mine"

    held_run = await client.start(["true"], proc_id="held")
    await wait_exit(client, "held")
    held = os.open(held_run.outputs["output"], os.O_RDONLY)
    try:
        await client.clean("held")
        later = await client.start(["printf", "later"], proc_id="later")
        await wait_exit(client, "later")
        assert Path(later.outputs["output"]).read_bytes() == b"later"
        assert os.read(held, 100) == b""
    finally:
        os.close(held)

    await client.clean("reused")  # not empty: deleted, never a spare
    fresh = await client.start(["true"], proc_id="fresh")
    await wait_exit(client, "fresh")
    assert os.stat(fresh.outputs["output"]).st_size == 0


async def test_a_first_burst_of_starts_finds_its_spool_files_made(
        client: AgentClient, state_dir: Path) -> None:
    """An agent makes a reserve of empty spool files ahead, and again as starts take
    them: a burst of starts, even the first, renames made files into place instead of
    creating each (a millisecond of the kernel's time apiece on a busy file system)."""
    runs = state_dir / "runs"
    made: set[int] = set()
    for _ in range(200):  # its thread makes them beside the loop
        made = {e.stat().st_ino for e in os.scandir(runs) if e.name.startswith("_spare.")}
        if len(made) >= SPARE_RESERVE:
            break
        await asyncio.sleep(0.05)
    assert len(made) == SPARE_RESERVE
    started = await asyncio.gather(*(client.start(["true"], proc_id=f"r{i}")
                                     for i in range(SPARE_RESERVE // 2)))
    assert {os.stat(p.outputs["output"]).st_ino for p in started} <= made
    for _ in range(200):  # and made again up to the reserve
        if sum(e.name.startswith("_spare.") for e in os.scandir(runs)) >= SPARE_RESERVE:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the reserve was not made again")


@pytest.mark.timeout(60)
async def test_a_request_during_a_burst_of_starts_is_not_held_behind_it(
        client: AgentClient) -> None:
    """The client keeps only a window of starts at the agent: a request made during a
    burst (a clean of a run that ended, a user's signal) is answered before the burst
    is through, not once every start has been."""
    starts = [asyncio.ensure_future(client.start(["true"], proc_id=f"b{i}")) for i in range(400)]
    try:
        await asyncio.wait(starts, return_when=asyncio.FIRST_COMPLETED)
        await client.ping()
        assert sum(not s.done() for s in starts) > 100
    finally:
        await asyncio.gather(*starts, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_exits_reported_during_a_burst_of_starts(state_dir: Path) -> None:
    """A burst of starts read in one go (as a 2 000-run POST sends them) does not hold
    back the exits of the programs that ended meanwhile: the daemon finishes those runs
    while the burst goes on. The requests go in one write, to arrive together."""
    proc = await asyncio.create_subprocess_exec(
        *local_connect_command(state_dir, idle_timeout=3),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        n = 300
        proc.stdin.write(b"".join(json.dumps({"id": i, "op": "start", "proc_id": f"b{i}",
                                              "argv": ["true"]}).encode() + b"\n"
                                  for i in range(n)))
        await proc.stdin.drain()
        order = []
        replies = 0
        while replies < n:
            msg = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            if msg.get("event") == "exited":
                order.append("exit")
            elif msg.get("id") is not None:
                assert msg["ok"], msg
                replies += 1
                order.append("reply")
        assert "exit" in order  # some came before the last reply
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)


async def test_on_exit_gets_every_exit_the_queued_first(client: AgentClient) -> None:
    """A consumer that registers late still gets the exits read before (they are queued),
    then each one as it is read, and `exits()` none of them."""
    await client.start(["true"], proc_id="early")
    for _ in range(250):
        if (await client.status("early")).state != "running":
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the exit event, sent after the status that said so, is read
    seen: list[tuple[str, int | None]] = []
    client.on_exit(lambda status: seen.append((status.proc_id, status.exit_code)))
    assert seen == [("early", 0)]
    await client.start(["sh", "-c", "exit 4"], proc_id="late")
    for _ in range(250):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert seen == [("early", 0), ("late", 4)]
    with pytest.raises(TimeoutError):
        await wait_exit(client, "late", timeout=0.3)
