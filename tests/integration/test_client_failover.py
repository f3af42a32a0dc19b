"""Clients with a list of daemons (SPEC §1.14): writes reach the leader whichever daemon
they are given to, and `apsis wait`, `runs --follow` and `events` carry on across a
`kill -9` of the leader, losing and repeating nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.cli.helpers import apsis, apsisctl, popen

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

JOBS = {"echo": "params: [n]\nprogram: 'echo out {{ n }}'\n",
        "fails": "program: 'sleep 1; exit 3'\n"}


def _pair(apsis_daemon: Any, pg_url: str, *, advertise: bool = True) -> tuple[Any, Any]:
    """A leader, then a standby (takeover in 3 s); `advertise`: each gives its URL."""
    daemons = []
    for _ in range(2):
        daemon = apsis_daemon(JOBS, database=pg_url, start=False)
        daemon.config_path = daemon.root / "apsis.yaml"
        where = f"  advertise: {daemon.url}/\n" if advertise else ""
        daemon.config_path.write_text(f"ha:\n{where}  node: node-{daemon.port}\n  takeover: 3s\n")
        daemons.append(daemon.start())
    return daemons[0], daemons[1]


def test_a_write_given_to_a_standby_lands_on_the_leader_and_status_shows_both(
        apsis_daemon, pg_url):
    # No advertise URLs: the standby answers 503, and the client tries the next daemon.
    leader, standby = _pair(apsis_daemon, pg_url, advertise=False)
    urls = f"{standby.url},{leader.url}"
    created = apsis(urls, "run", "echo", "n=1", "--wait")
    assert created.returncode == 0, created.stderr
    run_id = created.stdout.split()[0]
    assert run_id in apsis(standby.url, "runs", "--json").stdout  # the standby reads it

    status = apsisctl(None, "status", "--db", pg_url)
    assert status.returncode == 0, status.stderr
    assert f"node-{leader.port}, epoch 1" in status.stdout, status.stdout
    assert "2 connected" in status.stdout and "ago)" in status.stdout
    doc = json.loads(apsisctl(None, "status", "--db", pg_url, "--json").stdout)
    assert (doc["backend"], doc["leader"], doc["epoch"]) == ("postgresql", f"node-{leader.port}", 1)
    assert sorted(n["leader"] for n in doc["nodes"]) == [False, True]
    assert 0 <= doc["heartbeat_age_s"] < 5


def _stop(proc: subprocess.Popen) -> str:
    """Interrupts a follower (as Ctrl-C: it flushes) and returns what it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=15)
    return out.decode()


def test_wait_and_followers_carry_on_across_a_failover(apsis_daemon, pg_url):
    leader, standby = _pair(apsis_daemon, pg_url)
    # Given to the standby first: its 307 sends the write to the leader.
    first = apsis(f"{standby.url},{leader.url}", "run", "echo", "n=1", "--wait")
    assert first.returncode == 0, first.stderr
    urls = f"{leader.url},{standby.url}"
    # Due after the failover, so the run's end comes from the new leader.
    later = apsis(urls, "run", "fails", "--at", "+6s")
    assert later.returncode == 0, later.stderr
    run_id = later.stdout.split()[0]

    waiting = popen(urls, "wait", run_id)
    runs = popen(urls, "runs", "--follow", "--json", "--limit", "1000")
    events = popen(urls, "events", "--since", "0")
    try:
        time.sleep(2.0)  # all three on the leader, following
        leader.kill()
        created = apsis(urls, "run", "echo", "n=2", "--wait")  # a write during the takeover
        assert created.returncode == 0, created.stderr
        assert waiting.wait(60) == 1, waiting.stderr.read() if waiting.stderr else ""
        time.sleep(1.0)  # the last transitions reach the followers
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(10)
        printed_runs, printed_events = _stop(runs), _stop(events)
    seen = [json.loads(line) for line in printed_events.splitlines()]
    seqs = [e["seq"] for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # gapless, none twice
    assert any(e.get("type") == "run_transition" and e["run"]["run_id"] == run_id
               and e["to"] == "failure" for e in seen)
    changes = [(r["run_id"], r["state"]) for r in map(json.loads, printed_runs.splitlines())]
    assert len(changes) == len(set(changes)), changes  # no change printed twice
    assert (run_id, "failure") in changes
    second = created.stdout.split()[0]
    assert (second, "success") in changes
