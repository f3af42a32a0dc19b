"""Remote runs through a real sshd on 127.0.0.1 and the system's ssh client (SPEC §1.9).

Hosts `h1` and `h2` are aliases of one private sshd in the test's ssh config; `dead`
points at a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.sshd import SshServer


@pytest.fixture
async def remote(sshd: SshServer, harness, monkeypatch):
    """The engine harness, its remote runs going through the test's sshd."""
    for name, value in sshd.env.items():
        monkeypatch.setenv(name, value)
    return harness


async def _run_log(harness, run_id: str) -> list[str]:
    return [entry["message"] for entry in await harness.store.run_log(run_id)]


async def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_remote_success_with_output_env_and_host(remote):
    remote.write_jobs({"hello": """\
        params: [x]
        program:
          type: shell
          host: h1
          env: {FOO: bar}
          command: 'echo "$APSIS_RUN_ID $APSIS_JOB_ID $APSIS_ARG_X $FOO"; echo $APSIS_ARGS'
        """})
    await remote.start()
    [run_id] = await remote.run("hello", {"x": "7"})
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success" and run["exit_code"] == 0, run["message"]
    assert run["meta"]["proc"]["host"] == "h1"
    data = await remote.service.read_output(run_id, "output")
    assert data == f'{run_id} hello 7 bar\n{{"x": "7"}}\n'.encode()
    assert any("on h1" in m for m in await _run_log(remote, run_id))


async def test_remote_failure_exit_code_and_split_outputs(remote, sshd):
    remote.write_jobs({"fail": f"""\
        program: {{type: shell, host: h1, user: {sshd.user}, outputs: split,
                   command: 'echo out; echo err >&2; exit 3'}}
        """})
    await remote.start()
    [run_id] = await remote.run("fail")
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "failure" and run["exit_code"] == 3 and "exit code 3" in run["message"]
    assert run["meta"]["proc"]["user"] == sshd.user
    assert await remote.service.read_output(run_id, "stdout") == b"out\n"
    assert await remote.service.read_output(run_id, "stderr") == b"err\n"


async def test_host_group_round_robin_alternates_hosts(remote):
    (remote.jobs / ".apsis-jobs.yaml").write_text(
        "host_groups:\n  workers: {type: round-robin, hosts: [h1, h2]}\n"
        "  any: {type: random, hosts: [h1, h2]}\n")
    remote.write_jobs({"rr": "program: {type: program, host: workers, argv: [/bin/true]}\n",
                       "rnd": "program: {type: program, host: any, argv: [/bin/true]}\n"})
    await remote.start()
    hosts = []
    for _ in range(4):  # one after the other: the rotation order is then the run order
        [run_id] = await remote.run("rr")
        run = (await remote.wait(run_id))[run_id]
        assert run["state"] == "success", run["message"]
        assert run["meta"]["proc"]["host_group"] == "workers"
        hosts.append(run["meta"]["proc"]["host"])
    assert hosts in (["h1", "h2", "h1", "h2"], ["h2", "h1", "h2", "h1"])
    [run_id] = await remote.run("rnd")
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success" and run["meta"]["proc"]["host"] in ("h1", "h2")


async def test_unreachable_host_is_an_error_with_the_reason(remote):
    remote.write_jobs({"far": "program: {type: shell, host: dead, command: 'echo never'}\n"})
    await remote.start()
    started = time.monotonic()
    [run_id] = await remote.run("far")
    run = (await remote.wait(run_id))[run_id]
    assert time.monotonic() - started < 15
    assert run["state"] == "error"
    assert "cannot reach host dead" in run["message"] and "Connection refused" in run["message"]
    assert any("Connection refused" in m for m in await _run_log(remote, run_id))


async def test_stop_a_remote_run(remote):
    remote.write_jobs({"long": "program: {type: shell, host: h1, command: 'echo up; exec sleep 30'}\n"})
    await remote.start()
    [run_id] = await remote.run("long")
    await remote.wait(run_id, states={"running"})

    async def started() -> bool:
        return await remote.service.read_output(run_id, "output") == b"up\n"

    await _wait_for(started)
    await remote.service.stop(run_id)
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success" and "stopped" in run["message"]
    assert await remote.service.read_output(run_id, "output") == b"up\n"


async def test_remote_run_survives_a_daemon_restart(remote):
    remote.write_jobs({"slow": "program: {type: shell, host: h2, command: 'echo start; sleep 2; echo done'}\n"})
    await remote.start()
    [run_id] = await remote.run("slow")
    await remote.wait(run_id, states={"running"})
    await remote.stop()
    await remote.start()
    assert remote.engine.runs[run_id].meta.proc.host == "h2"
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success", run["message"]
    assert await remote.service.read_output(run_id, "output") == b"start\ndone\n"
    assert "reattached after a daemon restart" in await _run_log(remote, run_id)


async def test_host_unreachable_at_restart_is_retried(remote, sshd, monkeypatch):
    """The run stays running while its host cannot be reached, and finishes once it can."""
    import apsis.engine.runner

    monkeypatch.setattr(apsis.engine.runner, "RECONCILE_SECONDS", 0.5)
    remote.write_jobs({"slow": "program: {type: shell, host: h1, command: 'echo x; sleep 1; echo y'}\n"})
    await remote.start()
    [run_id] = await remote.run("slow")
    await remote.wait(run_id, states={"running"})
    await remote.stop()
    sshd.write_ssh_config(reachable=False)
    await remote.start()

    async def cut_off() -> bool:
        return any("cannot reach host h1 to reattach" in m for m in await _run_log(remote, run_id))

    await _wait_for(cut_off)
    await asyncio.sleep(1.5)  # the program ends meanwhile, unseen
    assert (await remote.service.get_run(run_id))["state"] == "running"
    sshd.write_ssh_config(reachable=True)
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success", run["message"]
    assert await remote.service.read_output(run_id, "output") == b"x\ny\n"


async def test_remote_run_survives_a_killed_ssh_connection(remote):
    remote.write_jobs({"slow": "program: {type: shell, host: h1, command: 'echo a; sleep 2; echo b'}\n"})
    await remote.start()
    engine = remote.engine
    [run_id] = await remote.run("slow")
    await remote.wait(run_id, states={"running"})

    async def live_output() -> bool:  # read through the remote agent while it runs
        return await remote.service.read_output(run_id, "output") == b"a\n"

    await _wait_for(live_output)
    assert [o["length"] for o in await remote.service.list_outputs(run_id)] == [2]
    client = engine.runner.hosts.connected("h1", None)
    old_pid = client.connect_pid
    os.kill(old_pid, signal.SIGKILL)
    run = (await remote.wait(run_id))[run_id]
    assert run["state"] == "success" and run["exit_code"] == 0, run["message"]
    assert await remote.service.read_output(run_id, "output") == b"a\nb\n"
    assert client.connect_pid != old_pid


async def test_big_remote_output_is_fetched_in_chunks_and_capped(remote):
    lines = 600_000  # 10 bytes a line: 6 MB, over the cap and over one 4 MiB read
    remote.write_jobs({"big": f"""\
        program:
          type: program
          host: h1
          argv: [python3, -c, "import sys; sys.stdout.write(''.join('%09d\\\\n' % i for i in range({lines})))"]
        """})
    await remote.start(output_max_bytes=5_000_000)
    [run_id] = await remote.run("big")
    run = (await remote.wait(run_id, timeout=40))[run_id]
    assert run["state"] == "success", run["message"]
    expected = "".join(f"{i:09d}\n" for i in range(lines)).encode()
    [info] = await remote.store.list_outputs(run_id)
    assert info["original_length"] == len(expected)
    data = await remote.service.read_output(run_id, "output")
    assert data.startswith(expected[:2_500_000]) and data.endswith(expected[-2_500_000:])
    assert b"bytes cut" in data
    assert not list(remote.tmp_path.glob(".apsis-fetch-*"))  # the temp file is gone
