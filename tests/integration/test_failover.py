"""Takeover under load (SPEC §1.14, issue 15): two daemons on one PostgreSQL database;
the leader is killed with `kill -9` while its runs are in flight, and the standby
leads, reattaches them, and resumes the schedules, losing nothing.

The daemon that leads first may run in its own UTS namespace (`unshare --uts`, a real
process whose host name is another), so that its local runs look, to the standby, like
runs of another machine: reached over ssh (the test's sshd), or not at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import contextlib
import json
import shutil
import subprocess
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from apsis.lib.timefmt import parse_time

from .helpers import FINISHED, create, http, wait_run

pytestmark = [pytest.mark.postgres]

TAKEOVER = 3.0
SLACK = 1.5  # a loaded machine's scheduling noise on top of ha.takeover
IN_FLIGHT = 200

JOBS = {
    "nap": "program: 'echo begin $APSIS_RUN_ID; sleep 2; echo end $APSIS_RUN_ID'\n",
    "tick": "schedule: {type: interval, interval: 1s}\nprogram: {type: no-op}\n",
}


def _pair(apsis_daemon: Any, pg_url: str, jobs: dict[str, str], *, config: str = "",
          env: dict[str, str] | None = None, leader_host: str | None = None,
          standby_args: list[str] | None = None) -> tuple[Any, Any]:
    """A leader, then a standby; `leader_host`: the leader's host name, in a UTS
    namespace of its own."""
    daemons = []
    for i in range(2):
        daemon = apsis_daemon(jobs, database=pg_url, start=False, env=env,
                              args=standby_args if i else None)
        daemon.config_path = daemon.root / "apsis.yaml"
        daemon.config_path.write_text(
            f"{config}ha:\n  advertise: {daemon.url}/\n  node: node-{daemon.port}\n"
            f"  takeover: {TAKEOVER:g}s\n  host_lost: 2s\n")
        if i == 0 and leader_host is not None:
            command = daemon.command()
            daemon.command = lambda command=command: [
                "unshare", "--uts", "sh", "-c", f'hostname {leader_host} && exec "$@"', "sh",
                *command]
        daemons.append(daemon.start())
    return daemons[0], daemons[1]


def _need_unshare() -> None:
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True) \
        if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs `unshare --uts` (root, or user namespaces) to run a daemon "
                    "under another host name")


async def _follow_events(port: int, seqs: list[int], transitions: list[dict[str, Any]],
                         connected: asyncio.Event) -> None:
    """Everything /events sends, until cancelled."""
    async with connect(f"ws://127.0.0.1:{port}/api/v1/events", max_size=None) as ws:
        connected.set()
        async for frame in ws:
            found = json.loads(frame)
            for event in found if isinstance(found, list) else [found]:
                seqs.append(event["seq"])
                if event["type"] == "run_transition":
                    transitions.append(event)


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


def _count(api: Any, job_id: str, states: list[str]) -> int:
    return len(api.get("/runs", params={"job_id": job_id, "state": states,
                                        "limit": 10_000}).json()["runs"])


async def _takeover(leader: Any, standby: Any, sapi: Any) -> float:
    """kill -9 the leader; seconds until the standby says it leads."""
    leader.kill()
    killed = time.monotonic()
    while sapi.get("/alive").json()["role"] != "leader":
        assert time.monotonic() - killed < TAKEOVER + SLACK, \
            f"no takeover within {TAKEOVER + SLACK}s:\n{standby.log_text()[-3000:]}"
        await asyncio.sleep(0.05)
    return time.monotonic() - killed


@pytest.mark.timeout(180)
async def test_kill_9_of_the_leader_under_load_loses_nothing(apsis_daemon, pg_url):
    # The standby started with `--since now`: that is about its start, not the gap of
    # a takeover, which is caught up from the stored clocks all the same.
    leader, standby = _pair(apsis_daemon, pg_url, JOBS, standby_args=["--since", "now"])
    seqs: list[int] = []
    transitions: list[dict[str, Any]] = []
    connected = asyncio.Event()
    follower = asyncio.create_task(_follow_events(standby.port, seqs, transitions, connected))
    try:
        await asyncio.wait_for(connected.wait(), 10)
        with http(leader) as lapi, http(standby) as sapi:
            runs = create(lapi, "nap", count=IN_FLIGHT)
            # Kill once every run has started (most still sleep, some may be done).
            await _wait(lambda: _count(lapi, "nap", ["running", *FINISHED]) == IN_FLIGHT, 60,
                        "200 runs started")
            in_flight = _count(lapi, "nap", ["running"])
            assert in_flight >= IN_FLIGHT // 2, "too slow to start: the test would prove little"
            killed_at = dt.datetime.now(dt.UTC)
            took = await _takeover(leader, standby, sapi)

            # Every run finishes once, with its whole output, as the agent saw it end.
            await _wait(lambda: _count(sapi, "nap", list(FINISHED)) == IN_FLIGHT, 60,
                        "200 runs finished")
            for run in runs:
                run_id = run["run_id"]
                done = sapi.get(f"/runs/{run_id}").json()
                assert done["state"] == "success", (run_id, done["message"])
                output = sapi.get(f"/runs/{run_id}/output/output").content
                assert output == f"begin {run_id}\nend {run_id}\n".encode(), run_id
                ends = [e for e in sapi.get(f"/runs/{run_id}/log").json()["log"]
                        if e["state"] == "success"]
                assert len(ends) == 1, (run_id, ends)

            def ends_seen() -> list[str]:
                return [e["run"]["run_id"] for e in transitions if e["run"]["job_id"] == "nap"
                        and e["to"] == "success" and e["from"] == "running"]

            # The follower reads while this test waits (the checks above block its loop).
            await _wait(lambda: len(ends_seen()) >= IN_FLIGHT, 30, "the follower saw every end")
            await asyncio.sleep(0.5)  # and no end twice, nor an extra one, after that
            # The follower saw each end once, on either leader.
            assert sorted(ends_seen()) == sorted(r["run_id"] for r in runs)

            # The schedule: every second from before the kill to well after, exactly once.
            after = killed_at + dt.timedelta(seconds=TAKEOVER + 2)

            def finished_ticks() -> list[dict[str, Any]]:
                ticks = sapi.get("/runs", params={"job_id": "tick", "limit": 10_000}).json()["runs"]
                return [t for t in ticks if t["state"] in FINISHED]

            await _wait(lambda: any(parse_time(t["times"]["schedule"]) >= after
                                    for t in finished_ticks()), 30, "ticks after the takeover")
            ticks = finished_ticks()
            times = sorted(parse_time(t["times"]["schedule"]) for t in ticks)
            assert times[0] < killed_at, times  # from before the kill
            assert len(set(times)) == len(times), "a scheduled time ran twice"
            steps = {(b - a).total_seconds() for a, b in zip(times, times[1:])}
            assert steps == {1.0}, f"a scheduled time was missed: {sorted(steps)}"
            assert {t["state"] for t in ticks} == {"success"}
        # The standby's stream: every event, leader's then its own, one seq after another.
        await asyncio.sleep(0.5)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert took <= TAKEOVER + SLACK
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower


@pytest.mark.timeout(120)
async def test_local_runs_of_a_leader_on_another_host_are_reattached_over_ssh(
        apsis_daemon, pg_url, sshd):
    # The first leader's host is `h1` (an alias of the test's sshd): the standby reaches
    # its agent over ssh and finishes its local run; a `host: h2` run comes back too.
    _need_unshare()
    jobs = {"nap": JOBS["nap"],
            "far": "program: {type: shell, host: h2, command: 'echo far; sleep 2; echo done'}\n"}
    leader, standby = _pair(apsis_daemon, pg_url, jobs, env=sshd.env, leader_host="h1")
    with http(leader) as lapi, http(standby) as sapi:
        [near] = create(lapi, "nap")
        [far] = create(lapi, "far")
        for run in (near, far):
            wait_run(lapi, run["run_id"], {"running"})
        await _takeover(leader, standby, sapi)
        near_id = near["run_id"]
        done = wait_run(sapi, near_id, timeout=30)
        assert done["state"] == "success", done["message"]
        assert sapi.get(f"/runs/{near_id}/output/output").content \
            == f"begin {near_id}\nend {near_id}\n".encode()
        done = wait_run(sapi, far["run_id"], timeout=30)
        assert done["state"] == "success", done["message"]
        assert sapi.get(f"/runs/{far['run_id']}/output/output").content == b"far\ndone\n"


@pytest.mark.timeout(120)
async def test_a_run_on_a_host_that_cannot_be_reached_is_an_error_after_host_lost(
        apsis_daemon, pg_url, sshd):
    # The first leader's host is `dead` (nothing listens where ssh reaches it): its local
    # run cannot be reattached, and is an error after ha.host_lost (2 s), saying why.
    _need_unshare()
    leader, standby = _pair(apsis_daemon, pg_url, {"nap": JOBS["nap"]}, env=sshd.env,
                            leader_host="dead")
    with http(leader) as lapi, http(standby) as sapi:
        [run] = create(lapi, "nap")
        run_id = run["run_id"]
        wait_run(lapi, run_id, {"running"})
        await _takeover(leader, standby, sapi)
        led = time.monotonic()
        done = wait_run(sapi, run_id, timeout=30)
        assert time.monotonic() - led >= 1.5  # not before host_lost
        assert done["state"] == "error"
        assert "cannot reach host dead" in done["message"], done["message"]
        assert "ha.host_lost" in done["message"] and "Connection refused" in done["message"]
        log = [e["message"] for e in sapi.get(f"/runs/{run_id}/log").json()["log"]]
        assert any("cannot reach host dead" in m and "to reattach" in m for m in log), log


@pytest.mark.timeout(120)
def test_a_remote_host_away_at_a_restart_makes_its_run_an_error_after_host_lost(
        apsis_daemon, sshd):
    # No standby needed: a plain restart on SQLite waits for the host as long, no longer.
    daemon = apsis_daemon(
        {"far": "program: {type: shell, host: h1, command: 'echo far; sleep 10'}\n"},
        env=sshd.env, config="ha:\n  host_lost: 2s\n")
    with http(daemon) as api:
        [run] = create(api, "far")
        wait_run(api, run["run_id"], {"running"})
        sshd.write_ssh_config(reachable=False)
        daemon.restart()
        done = wait_run(api, run["run_id"], timeout=30)
        assert done["state"] == "error"
        assert "cannot reach host h1 for 2s (ha.host_lost)" in done["message"], done["message"]
        assert "Connection refused" in done["message"]
