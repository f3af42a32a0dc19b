"""Issue 13's CLI items against a real daemon: event filters that reject what cannot
match, abbreviated job names shown as written, folders as run filters, `--all`,
one JSON shape, completion of recent runs, and the command-line conventions."""

from __future__ import annotations

import json
import subprocess
import time

import httpx

from apsis_cli.cmd_query import EVENT_TYPES

from .helpers import apsis, one_run, popen

JOBS = {
    "market/load-prices": "# Prices of one trading day.\nparams: [date]\nprogram: 'true'\n",
    "ops/ok": "program: 'true'\n",
    "ops/bad": "program: 'false'\n",
}


def _first_line(proc: subprocess.Popen, timeout: float = 15) -> bytes:
    """The first line `proc` prints, then stop it."""
    import select

    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        assert ready, "nothing printed"
        return proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------ 14: events filters

def test_events_filters_reject_what_cannot_match(url):
    for args, words in ((["-t", "bogus_type"], "unknown event type 'bogus_type'"),
                        (["-j", "nosuch/job"], "no job matches 'nosuch/job'"),
                        (["-r", "r999999"], "r999999")):
        result = apsis(url, "events", *args, timeout=20)
        assert result.returncode == 2, (args, result)
        assert words in result.stderr and result.stdout == "", (args, result.stderr)


def test_events_job_filter_takes_an_abbreviation(url):
    one_run(apsis(url, "run", "market/load-prices", "date=2026-12-01"))
    proc = popen(url, "events", "--since", "0", "-j", "mar/lo", "-t", "run_transition")
    event = json.loads(_first_line(proc))
    assert event["run"]["job_id"] == "market/load-prices", event


def test_event_types_are_the_daemons(url):
    document = httpx.get(f"{url}/api/v1/openapi.json", timeout=10).json()
    enum = document["components"]["schemas"]["Event"]["properties"]["type"]["enum"]
    assert sorted(EVENT_TYPES) == sorted(enum)
