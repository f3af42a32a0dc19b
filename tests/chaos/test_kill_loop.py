"""A randomised loop that kills the daemon or the agent at random points of a workload
(schedules, dependencies, retries, timeouts), then checks what SPEC §1.10 promises:

- every run finished exactly once (one finishing transition in the event log);
- no output lost (every successful run's output is complete);
- the event stream's `seq` strictly increasing, replayed from the start;
- `PRAGMA integrity_check` ok;
- every scheduled (job, args, time) present once.

The seed is printed; `APSIS_CHAOS_SEED=N` replays the same kills (which kill, after how
long, and the workload between), `APSIS_CHAOS_KILLS` sets how many (20 by default).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.helpers import FINISHED, http

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

JOBS = {
    "tick": ("schedule: {type: interval, interval: 2s}\n"
             "program: {type: shell, command: 'echo tick; sleep 0.3; echo tock'}\n"),
    "base": "params: [n]\nprogram: {type: shell, command: 'sleep 0.2; echo base {{ n }}'}\n",
    "dep": ("params: [n]\ncondition: {type: dependency, job_id: base, exist: true}\n"
            "program: {type: shell, command: 'echo dep {{ n }}'}\n"),
    "flaky": ("params: [n]\nprogram: {type: shell, command: 'echo try; test $(( $$ % 2 )) = 0'}\n"
              "action: {type: retry, count: 2, delay: 0s, if: {states: [failure]}}\n"),
    "slow": "params: [n]\nprogram: {type: shell, command: 'sleep 5', timeout: {duration: 0.5s}}\n",
}
EXPECTED_OUTPUT = {"base": "base {n}\n", "dep": "dep {n}\n", "tick": "tick\ntock\n", "flaky": "try\n"}
UNFINISHED = {"scheduled", "waiting", "starting", "running", "stopping"}


def _kill_agent(daemon) -> bool:
    try:
        pid = int((Path(str(daemon.db) + ".agent") / "server.lock").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        return True
    except (OSError, ValueError):
        return False


def _post_workload(api: httpx.Client, rng: random.Random, n: int) -> None:
    jobs = rng.sample(["base", "flaky", "slow"], k=rng.randint(1, 3))
    if "base" in jobs and rng.random() < 0.7:
        jobs.insert(rng.randrange(len(jobs) + 1), "dep")  # before or after the base it waits for
    for job_id in jobs:
        try:
            api.post("/runs", json={"job_id": job_id, "args": {"n": str(n)}}, timeout=5)
        except httpx.TransportError:
            return  # the daemon went down under this request: it may or may not be there


def _settle(api: httpx.Client, until: str, timeout: float = 60.0) -> list[dict]:
    """Every run but the ticks scheduled after `until` finished; returns all runs."""
    deadline = time.monotonic() + timeout
    while True:
        runs = api.get("/runs", params={"limit": 10000}).json()["runs"]
        pending = [r for r in runs if r["state"] in UNFINISHED
                   and not (r["job_id"] == "tick" and r["times"]["schedule"] > until)]
        if not pending:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"still unfinished: {[(r['run_id'], r['job_id'], r['state']) for r in pending]}")
        time.sleep(0.2)


def _event_seqs(daemon, last: int) -> list[int]:
    """The stream's seqs from the start up to `last` (the ticks go on meanwhile: the
    frame that reaches `last` may carry later events too)."""
    seqs: list[int] = []
    with connect(f"ws://127.0.0.1:{daemon.port}/api/v1/events?since=0&batch=1", open_timeout=10) as ws:
        while not seqs or seqs[-1] < last:
            seqs += [event["seq"] for event in json.loads(ws.recv(timeout=10))]
    return [seq for seq in seqs if seq <= last]


def test_random_kills_of_daemon_and_agent_break_no_promise(apsis_daemon):
    seed = int(os.environ.get("APSIS_CHAOS_SEED", random.randrange(1 << 32)))
    kills = int(os.environ.get("APSIS_CHAOS_KILLS", "20"))
    print(f"chaos seed: {seed} (replay with APSIS_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    daemon = apsis_daemon(JOBS)
    what = Counter()
    with http(daemon) as api:
        for i in range(kills):
            _post_workload(api, rng, i)
            time.sleep(rng.uniform(0.1, 1.5))
            if rng.random() < 0.5 and _kill_agent(daemon):
                what["agent"] += 1
            else:
                daemon.kill()
                what["daemon"] += 1
                daemon.start()
        until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        runs = _settle(api, until)
        by_id = {r["run_id"]: r for r in runs}
        for run in runs:
            expected = EXPECTED_OUTPUT.get(run["job_id"])
            if run["state"] == "success" and expected is not None:
                output = api.get(f"/runs/{run['run_id']}/output/output").text
                assert output == expected.format(**run["args"]), (seed, run["run_id"], output)
        last_seq = api.get("/runs", params={"limit": 1}).json()["seq"]
        seqs = _event_seqs(daemon, last_seq)
    print(f"chaos: {dict(what)} kills, {len(runs)} runs, {last_seq} events")
    assert all(a < b for a, b in zip(seqs, seqs[1:])) and seqs[-1] == last_seq, (seed, "seq order")
    assert daemon.stop() == 0

    db = sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", seed
    finishes = Counter()
    for (event,) in db.execute("SELECT event FROM events WHERE type = 'run_transition'"):
        event = json.loads(event)
        if event["to"] in FINISHED:
            finishes[event["run"]["run_id"]] += 1
    # The states as the daemon left them (a tick due after `until` may have finished
    # between the settle and the stop): each finished run finished exactly once.
    states = {json.loads(run)["run_id"]: json.loads(run)["state"]
              for (run,) in db.execute("SELECT run FROM runs")}
    assert set(by_id) <= set(states), seed
    for run_id, state in states.items():
        want = 1 if state in FINISHED else 0
        assert finishes[run_id] == want, (seed, run_id, state, finishes[run_id])
    scheduled = Counter((r["job_id"], json.dumps(r["args"], sort_keys=True), r["times"]["schedule"])
                        for r in runs if r["job_id"] == "tick" and r.get("rerun_of") is None)
    assert [key for key, n in scheduled.items() if n > 1] == [], seed
    ticks = sorted(time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) for _, _, t in scheduled)
    assert all(b - a == 2 for a, b in zip(ticks, ticks[1:])), (seed, "a scheduled time is missing")
