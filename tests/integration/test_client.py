"""apsis.client.Client: every method against a real daemon, and its import hygiene."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import pytest

from apsis.client import ApsisError, ApsisNotFound, Client

JOBS = {
    "noop": "program: {type: no-op}\n",
    "hourly/load": ("params: [date]\n"
                    "program: {type: no-op}\n"
                    "metadata: {labels: [hourly]}\n"
                    "schedule: {type: interval, interval: 1h}\n"),
    "echo": "program: \"printf 'hi\\\\n'\"\n",
    "long": "program: {type: no-op, duration: 600}\n",
}


@pytest.fixture(scope="module")
def daemon(apsis_daemon_module):
    return apsis_daemon_module(JOBS, args=["--since", "now"])


async def wait_state(client: Client, run_id: str, states: set[str]) -> dict:
    for _ in range(400):
        run = await client.run(run_id)
        if run["state"] in states:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {states}")


async def test_reading(daemon):
    async with daemon.client() as client:
        assert (await client.alive())["status"] == "ok"
        assert [j["job_id"] for j in await client.jobs()] == sorted(JOBS)
        assert [j["job_id"] for j in await client.jobs(label="hourly")] == ["hourly/load"]
        assert (await client.job("hourly/load"))["params"] == ["date"]
        with pytest.raises(ApsisNotFound) as info:
            await client.job("hourly")
        assert info.value.status == 404 and info.value.code == "unknown_job"
        expected = await client.job_schedule("hourly/load", dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                                             "2030-01-01T05:00:00Z")
        assert [e["time"] for e in expected] == [f"2030-01-01T0{h}:00:00Z" for h in range(5)]
        assert {e["args"]["date"] for e in expected} == {"2030-01-01"}
        assert len(await client.job_schedule("hourly/load", limit=3)) == 3
        stats = await client.stats()
        assert stats["jobs"] == len(JOBS)


async def test_runs_pages_and_filters(daemon):
    async with daemon.client() as client:
        created = await client.create_runs("hourly/load", {"date": "2040-02-02"}, count=7,
                                           schedule="2040-02-02T00:00:00Z")
        ids = [r["run_id"] for r in created]
        page = await client.runs(job_id="hourly/load", args={"date": "2040-02-02"}, limit=3)
        assert len(page["runs"]) == 3 and page["cursor"] and isinstance(page["seq"], int)
        every = [r["run_id"] async for r in client.iter_runs(args={"date": "2040-02-02"},
                                                             page_size=2)]
        assert sorted(every) == sorted(ids)
        assert len((await client.runs(states=["scheduled"], labels=["hourly"],
                                      since="2040-02-01T00:00:00Z",
                                      until=dt.datetime(2040, 2, 3), limit=100))["runs"]) >= 7
        for run_id in ids:
            assert (await client.skip(run_id))["state"] == "skipped"
        with pytest.raises(ApsisError) as info:
            await client.skip(ids[0])
        assert info.value.status == 409 and info.value.code == "bad_state"


async def test_several_jobs_from_a_daemon_that_refuses_them(daemon):
    # A daemon older than `GET /runs?job_id=a&job_id=b` refuses the repeat with a 400 naming
    # job_id. The client then asks job by job, merging in the API's order, and from then on
    # without asking together again: the same runs as a daemon that takes them.
    jobs = ["hourly/load", "noop"]
    async with daemon.client() as client:
        created = [r["run_id"] for when in ("2041-03-03T02:00:00Z", "2041-03-03T01:00:00Z")
                   for job, args in (("hourly/load", {"date": "2041"}), ("noop", {}))
                   for r in await client.create_runs(job, args, count=2, schedule=when)]
        query = {"job_id": jobs, "since": "2041-03-03T00:00:00Z"}
        together = await client.runs(**query, limit=3)
        every = [r["run_id"] async for r in client.iter_runs(**query, page_size=2)]
        assert sorted(every) == sorted(created)
    async with daemon.client() as old:
        asked = []
        request = old._request

        async def refusing(method: str, path: str, **kwargs: object) -> object:
            params = list(kwargs["params"])  # type: ignore[call-overload]
            asked.append(params)
            if sum(name == "job_id" for name, _ in params) > 1:
                raise ApsisError("query parameter 'job_id' given 2 times; give it once", 400,
                                 "bad_param")
            return await request(method, path, **kwargs)  # type: ignore[arg-type]

        old._request = refusing  # type: ignore[method-assign]
        merged = await old.runs(**query, limit=3)
        assert [r["run_id"] for r in merged["runs"]] == [r["run_id"] for r in together["runs"]]
        assert merged["cursor"] is None
        assert [r["run_id"] async for r in old.iter_runs(**query, page_size=2)] == every
    together_asked = [p for p in asked if sum(name == "job_id" for name, _ in p) > 1]
    assert len(together_asked) == 1  # refused once, never asked together again
    async with daemon.client() as client:
        for run_id in created:
            await client.skip(run_id)


async def test_operations(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("noop", schedule="+1h")
        assert (await client.start(run["run_id"]))["run_id"] == run["run_id"]
        done = await wait_state(client, run["run_id"], {"success"})
        assert (await client.mark(done["run_id"], "failure"))["state"] == "failure"
        rerun = await client.rerun(done["run_id"])
        assert rerun["rerun_of"] == done["run_id"]
        log = await client.run_log(done["run_id"])
        assert log[-1]["state"] == "failure"
        [long] = await client.create_runs("long")
        await wait_state(client, long["run_id"], {"running"})
        with pytest.raises(ApsisError) as info:
            await client.signal(long["run_id"], "SIGUSR1")
        assert info.value.status == 409
        await client.stop(long["run_id"])
        # Ended by its stop signal: a success, as in Apsis.
        assert (await wait_state(client, long["run_id"], {"success"}))["state"] == "success"
        with pytest.raises(ApsisError) as bad:
            await client.create_runs("noop", {"nope": "1"})
        assert bad.value.status == 422 and "nope" in bad.value.message


async def test_outputs_and_adhoc(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("echo")
        await wait_state(client, run["run_id"], {"success"})
        assert (await client.outputs(run["run_id"]))[0]["length"] == 3
        assert await client.output_bytes(run["run_id"]) == b"hi\n"
        assert await client.output_bytes(run["run_id"], start=1, end=2) == b"i"
        [adhoc] = await client.create_adhoc({"program": "printf adhoc"}, count=1)
        assert adhoc["ad_hoc"] and "ad-hoc" in adhoc["labels"]
        data = b"".join([c async for c in client.output(adhoc["run_id"])])
        assert data == b"adhoc"


async def test_reload_and_shutdown(apsis_daemon):
    daemon = apsis_daemon({"noop": "program: {type: no-op}\n"})
    async with daemon.client() as client:
        daemon.write_job("added", "program: {type: no-op}\n")
        assert (await client.reload(dry_run=True))["added"] == ["added"]
        assert (await client.reload())["added"] == ["added"]
        assert (await client.shutdown())["status"] == "stopping"
    assert await asyncio.to_thread(daemon.wait_exit) == 0


async def test_events_report_the_state_of_their_connection(apsis_daemon):
    daemon = apsis_daemon({"noop": "program: {type: no-op}\n"})
    states: list[str] = []
    seen: list[dict] = []

    async def follow(client: Client) -> None:
        async for event in client.events(since=0, on_state=states.append):
            seen.append(event)

    async def until(predicate, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, (states, seen)
            await asyncio.sleep(0.05)

    async with daemon.client(retry_for=None) as client, daemon.client() as other:
        task = asyncio.create_task(follow(client))
        try:
            await until(lambda: states == ["connecting", "live"])
            await asyncio.to_thread(daemon.restart)  # SIGKILL, then start again
            await until(lambda: states[-1:] == ["live"] and len(states) > 2)
            # Down once, however many attempts it took, and live only once it is back.
            assert states == ["connecting", "live", "disconnected", "live"]
            [run] = await other.create_runs("noop")
            await until(lambda: any((e.get("run") or {}).get("run_id") == run["run_id"]
                                    for e in seen))
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert states[-1] == "live"  # the consumer stopping is not a disconnection


async def test_events_refused_report_disconnected(apsis_daemon):
    daemon = apsis_daemon({}, config="api:\n  tokens: {s3cret-0123456789abcdef: read}\n",
                          token="s3cret-0123456789abcdef")
    states: list[str] = []
    async with Client(daemon.url, "wrong") as client:
        with pytest.raises(ApsisError) as info:
            async for _ in client.events(since=0, on_state=states.append):
                pass
    assert info.value.status == 401
    assert states == ["connecting", "disconnected"]


def test_importing_the_client_imports_no_http_library():
    code = ("import sys, apsis.client; "
            "print(sorted(m for m in ('httpx', 'websockets', 'rich', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys, asyncio, apsis.client as c; c._import_httpx(); "
            "print('rich' in sys.modules, sys.modules.get('httpx._main'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False None"


def test_bad_urls():
    with pytest.raises(ApsisError):
        Client("ftp://example.com")
    assert Client("unix:/tmp/x.sock").daemons.current.uds == "/tmp/x.sock"
    assert Client("127.0.0.1:9999").url == "127.0.0.1:9999"
