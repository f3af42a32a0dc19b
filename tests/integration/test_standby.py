"""Two daemons on one PostgreSQL database (SPEC §1.14): a leader and a standby that
serves reads and events, redirects writes, and takes over when the leader is killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from .helpers import create, http, wait_run

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

JOBS = {"echo": "params: [n]\nprogram: 'echo out {{ n }}'\n"}


def _pair(apsis_daemon: Any, pg_url: str) -> tuple[Any, Any]:
    """A leader, then a standby; each advertises its own URL, takeover in 3 s."""
    daemons = []
    for _ in range(2):
        daemon = apsis_daemon(JOBS, database=pg_url, start=False)
        daemon.config_path = daemon.root / "apsis.yaml"
        daemon.config_path.write_text(
            f"ha:\n  advertise: {daemon.url}/\n  node: node-{daemon.port}\n  takeover: 3s\n")
        daemons.append(daemon.start())
    return daemons[0], daemons[1]


async def _events_until_success(port: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with connect(f"ws://127.0.0.1:{port}/api/v1/events") as ws:
        while not any(e.get("to") == "success" for e in events):
            found = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            events.extend(found if isinstance(found, list) else [found])
    return events


async def test_standby_serves_reads_and_events_redirects_writes_and_takes_over(
        apsis_daemon, pg_url):
    leader, standby = _pair(apsis_daemon, pg_url)
    with http(leader) as lapi, http(standby) as sapi:
        alive = sapi.get("/alive").json()
        assert (alive["role"], alive["leader"]) == ("standby", f"{leader.url}/")
        assert lapi.get("/alive").json()["role"] == "leader"
        assert alive["epoch"] == lapi.get("/alive").json()["epoch"] >= 1

        # Events the leader commits reach a client of the standby (LISTEN/NOTIFY).
        listening = asyncio.create_task(_events_until_success(standby.port))
        await asyncio.sleep(0.5)
        [run] = create(lapi, "echo", args={"n": "1"})
        events = await listening
        assert [e["to"] for e in events if e["type"] == "run_transition"] \
            == ["scheduled", "starting", "running", "success"]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs))

        # Reads come from the database; writes go to the leader.
        assert wait_run(sapi, run["run_id"])["state"] == "success"
        assert [r["run_id"] for r in sapi.get("/runs", params={"job_id": "echo"}).json()["runs"]] \
            == [run["run_id"]]
        refused = sapi.post("/runs", json={"job_id": "echo", "args": {"n": "2"}})
        assert refused.status_code == 307
        assert refused.headers["location"] == f"{leader.url}/api/v1/runs"
        metrics = sapi.get("/metrics").text
        assert "apsis_leader 0.0" in metrics and "apsis_failovers_total 0.0" in metrics

        # kill -9 the leader: the standby leads within ha.takeover and takes writes.
        leader.kill()
        killed = time.monotonic()
        while sapi.get("/alive").json()["role"] != "leader":
            assert time.monotonic() - killed < 3.0, "the standby did not take over within 3s"
            await asyncio.sleep(0.05)
        assert sapi.get("/alive").json()["epoch"] == alive["epoch"] + 1
        [later] = create(sapi, "echo", args={"n": "3"})
        assert wait_run(sapi, later["run_id"])["state"] == "success"
        assert "apsis_failovers_total 1.0" in sapi.get("/metrics").text


def test_a_standby_names_a_leader_without_an_advertise_url(apsis_daemon, pg_url):
    # A leader without an advertise URL: the standby answers 503 naming it.
    leader = apsis_daemon(JOBS, database=pg_url, config="ha:\n  node: first\n")
    standby = apsis_daemon(JOBS, database=pg_url)
    with http(standby) as sapi:
        refused = sapi.post("/runs", json={"job_id": "echo", "args": {"n": "1"}})
        assert refused.status_code == 503
        assert "first" in refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "not_leader"
        # It keeps its jobs directory current for readers, reload after reload, without
        # writing.
        deadline = time.monotonic() + 20
        for job_id in ("new", "newer"):
            standby.write_job(job_id, "program: 'true'\n")
            while sapi.get(f"/jobs/{job_id}").status_code != 200:
                assert time.monotonic() < deadline, standby.log_text()[-3000:]
                time.sleep(0.1)
    assert "reloading jobs failed" not in standby.log_text()
    assert leader.running


async def test_a_leader_whose_epoch_is_stale_cannot_write(pg_url):
    # Fencing: another daemon took over (the epoch moved on); this one's write is refused
    # and nothing of it is committed.
    import asyncpg

    from apsis.store.postgres import FencedError, PgStore

    store = await PgStore.open(pg_url, elect=True)
    try:
        assert await store.try_lead("a", None) == 1
        await store.write(events=[{"ts": "2026-01-01T00:00:00Z", "type": "daemon"}])
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE cluster SET epoch = epoch + 1, leader = 'b'")
        finally:
            await conn.close()
        with pytest.raises(FencedError, match="since epoch 2"):
            await store.write(events=[{"ts": "2026-01-01T00:00:01Z", "type": "daemon"}])
        assert await store.last_seq() == 1
        with pytest.raises(FencedError):
            await store.heartbeat()
    finally:
        await store.close()


async def test_a_leader_that_loses_its_database_connection_stops_leading(apsis_daemon, pg_url):
    # The leader's sessions are cut (not its process): it stops at once and comes back as
    # a standby; one daemon leads, at the next epoch, and takes writes.
    import asyncpg

    first, second = _pair(apsis_daemon, pg_url)
    with http(first) as api:
        epoch = api.get("/alive").json()["epoch"]
    conn = await asyncpg.connect(pg_url)
    try:
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE $1", f"apsis % pid {first.pid}")
    finally:
        await conn.close()
    assert cut >= 1
    deadline = time.monotonic() + 20
    while "no longer the leader" not in first.log_text():
        assert time.monotonic() < deadline, first.log_text()[-3000:]
        await asyncio.sleep(0.1)
    first.wait_alive()
    while True:
        roles = {}
        for daemon in (first, second):
            with contextlib.suppress(httpx.TransportError), http(daemon) as api:
                alive = api.get("/alive").json()
                roles[alive["role"]] = (daemon, alive["epoch"])
        if set(roles) == {"leader", "standby"}:
            break
        assert time.monotonic() < deadline, roles
        await asyncio.sleep(0.1)
    leader, new_epoch = roles["leader"]
    assert new_epoch == epoch + 1
    with http(leader) as api:
        [run] = create(api, "echo", args={"n": "4"})
        assert wait_run(api, run["run_id"])["state"] == "success"
