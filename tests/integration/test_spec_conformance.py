"""SPEC Part 1, pinned at the daemon's surface: run JSON (§1.6), event shapes (§1.7),
the programs' environment (§1.2), actions (§1.12), apsis.yaml (§1.3) and binds (§1.11)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect

from .conftest import ROOT, free_port
from .helpers import FINISHED, assert_error, create, http, wait_run

JOBS = {
    "noop": "program: {type: no-op}\n",
    "echo": "program: [printf, 'hello\\n']\n",
    "fails": "program: {type: shell, command: 'exit 3'}\n",
    "env": (
        "params: [load-date, country]\n"
        "program: [sh, -c, 'env | grep ^APSIS_ | sort']\n"
    ),
    "later": "program: {type: no-op}\n",
}

RUN_FIELDS = {"run_id", "job_id", "args", "state", "labels", "times", "message", "program",
              "conditions", "actions", "rerun_of", "attempt", "exit_code", "signal", "outputs",
              "ad_hoc"}


# ------------------------------------------------------------------ §1.6 runs

def test_run_json_has_every_spec_field(api):
    run = create(api, "echo")[0]
    assert set(run) >= RUN_FIELDS
    done = wait_run(api, run["run_id"])
    assert set(done) >= RUN_FIELDS
    assert done["run_id"].startswith("r") and done["run_id"][1:].isdigit()
    assert (done["job_id"], done["args"], done["state"]) == ("echo", {}, "success")
    assert {"schedule", "new", "scheduled", "starting", "running", "success"} <= set(done["times"])
    assert done["exit_code"] == 0 and done["signal"] is None
    assert done["rerun_of"] is None and done["attempt"] == 1 and done["ad_hoc"] is False
    assert done["outputs"] == [{"output_id": "output", "length": 6}]
    assert isinstance(done["conditions"], list) and isinstance(done["actions"], list)
    # times.stop is there when the run has a stop time.
    stopped = create(api, "later", times={"schedule": "+1h", "stop": "+2h"})[0]
    assert set(stopped["times"]) >= {"schedule", "stop"}
    # A rerun records what it reruns and its attempt.
    rerun = api.post(f"/runs/{run['run_id']}/rerun")
    assert rerun.status_code in (200, 201), rerun.text
    again = rerun.json()
    again = again["runs"][0] if "runs" in again else again
    assert again["rerun_of"] == run["run_id"] and again["attempt"] == 2


def test_get_runs_body_and_pages(api):
    create(api, "noop", count=3)
    body = api.get("/runs", params={"job_id": "noop", "limit": 2}).json()
    assert set(body) >= {"runs", "seq", "cursor"}
    assert isinstance(body["seq"], int) and len(body["runs"]) == 2
    for run in body["runs"]:
        assert set(run) >= {"run_id", "job_id", "args", "state", "times"}
    assert body["cursor"]
    rest = api.get("/runs", params={"job_id": "noop", "limit": 100,
                                     "cursor": body["cursor"]}).json()
    ids = [r["run_id"] for r in body["runs"] + rest["runs"]]
    assert len(ids) == len(set(ids)) >= 3
    assert rest["cursor"] is None
    # The API never fuzzy-matches: a prefix is no job.
    assert api.get("/runs", params={"job_id": "noo"}).json()["runs"] == []
    assert_error(api.get("/jobs/noo"), 404)


def test_error_bodies_and_statuses(api):
    assert_error(api.get("/runs/r999999"), 404)
    assert_error(api.get("/jobs/nosuch"), 404)
    assert_error(api.get("/runs", params={"state": "bogus"}), 400)
    assert_error(api.get("/runs", params={"limit": "x"}), 400)
    assert_error(api.post("/runs", content=b"{not json"), 400)
    assert_error(api.post("/runs", json={"job_id": "env", "args": {}}), 422)
    assert_error(api.post("/runs", json={"job": {"program": {"type": "bogus"}}}), 422)
    # §1.11: job ids cannot escape the jobs directory, inline ones neither.
    for job_id in ("../x", "/etc/x", "a/../../x", ".hidden"):
        assert_error(api.post("/runs", json={"job": {"program": {"type": "no-op"},
                                                     "job_id": job_id}}), 400)
    finished = create(api, "noop")[0]
    wait_run(api, finished["run_id"])
    assert_error(api.post(f"/runs/{finished['run_id']}/skip"), 409)
    assert_error(api.post(f"/runs/{finished['run_id']}/mark/bogus"), 422)


def test_an_ad_hoc_job_has_a_schedule_and_an_unknown_one_is_named(api):
    run = api.post("/runs", json={"job": {"program": {"type": "no-op"}}}).json()["runs"][0]
    job_id = run["job_id"]
    assert api.get(f"/jobs/{job_id}").status_code == 200
    schedule = api.get(f"/jobs/{job_id}/schedule")
    assert schedule.status_code == 200, schedule.text
    assert (schedule.json()["job_id"], schedule.json()["runs"]) == (job_id, [])
    error = assert_error(api.get("/jobs/nosuch/schedule"), 404, "unknown_job")
    assert error["message"] == "no job 'nosuch'"


# ------------------------------------------------------------------ §1.2 environment

def test_program_environment(api, daemon):
    run = create(api, "env", args={"load-date": "2026-12-01", "country": "US"})[0]
    assert wait_run(api, run["run_id"])["state"] == "success"
    text = api.get(f"/runs/{run['run_id']}/output/output").text
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env["APSIS_RUN_ID"] == run["run_id"]
    assert env["APSIS_JOB_ID"] == "env"
    assert env["APSIS_URL"].rstrip("/") == daemon.url
    assert json.loads(env["APSIS_ARGS"]) == {"load-date": "2026-12-01", "country": "US"}
    assert env["APSIS_ARG_LOAD_DATE"] == "2026-12-01"
    assert env["APSIS_ARG_COUNTRY"] == "US"


# ------------------------------------------------------------------ §1.7 events

async def _collect(ws, until, timeout: float = 20.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {[e['type'] for e in events]}"
        try:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            pass
    return events


async def test_event_shapes_and_since_omitted_is_from_now(daemon):
    ws_url = daemon.url.replace("http", "ws", 1) + "/api/v1/events"
    async with httpx.AsyncClient(base_url=daemon.api, timeout=30) as api:
        seq_before = (await api.get("/runs", params={"limit": 1})).json()["seq"]
        async with connect(ws_url) as ws:
            await asyncio.sleep(0.3)  # subscribed before anything below happens
            created = (await api.post("/runs", json={"job_id": "echo"})).json()["runs"][0]
            run_id = created["run_id"]
            events = await _collect(ws, lambda es: any(
                e["type"] == "run_log" and e["run_id"] == run_id
                and e["entry"]["state"] == "success" for e in es))
            daemon.write_job("added", "program: {type: no-op}\n")
            daemon.write_job("later", "program: {type: no-op, duration: 1}\n")
            (daemon.jobs_dir / "noop.yaml").rename(daemon.jobs_dir / "noop.yaml.off")
            try:
                assert (await api.post("/control/reload")).status_code == 200
                events += await _collect(ws, lambda es: any(
                    e["type"] == "jobs_reloaded" for e in es))
            finally:
                (daemon.jobs_dir / "noop.yaml.off").rename(daemon.jobs_dir / "noop.yaml")
                (daemon.jobs_dir / "added.yaml").unlink()
                daemon.write_job("later", JOBS["later"])
                await api.post("/control/reload")

        async with connect(ws_url + "?since=0") as ws:
            replay = await _collect(ws, lambda es: any(e["type"] == "daemon" for e in es))

    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] > seq_before  # from now, strictly increasing
    for event in events + replay:
        assert isinstance(event["seq"], int) and isinstance(event["ts"], str)
    mine = [e for e in events if e.get("run_id") == run_id
            or e.get("run", {}).get("run_id") == run_id]
    transitions = [e for e in mine if e["type"] == "run_transition"]
    assert [(e["from"], e["to"]) for e in transitions] == [
        ("new", "scheduled"), ("scheduled", "starting"), ("starting", "running"),
        ("running", "success")]
    for e in transitions:
        assert {"run_id", "job_id", "args", "state", "times"} <= set(e["run"])
        assert e["run"]["state"] == e["to"]
    logs = [e for e in mine if e["type"] == "run_log"]
    assert logs and all(set(e["entry"]) >= {"ts", "message"} for e in logs)
    # Output appended, with the final length, even for a run quicker than any poll.
    appended = [e for e in mine if e["type"] == "output_appended"]
    assert appended and appended[-1]["output_id"] == "output" and appended[-1]["length"] == 6
    assert all(isinstance(e["length"], int) for e in appended)
    by_type = {e["type"]: e for e in events}
    assert by_type["job_added"]["job"]["job_id"] == "added"
    assert by_type["job_changed"]["job"]["job_id"] == "later"
    assert by_type["job_removed"]["job"]["job_id"] == "noop"
    assert "jobs_reloaded" in by_type
    daemon_events = [e for e in replay if e["type"] == "daemon"]
    assert daemon_events and isinstance(daemon_events[0]["status"], str)


# ------------------------------------------------------------------ §1.12 actions

def test_action_without_if_fires_on_the_finished_state_only(apsis_daemon, tmp_path):
    record = tmp_path / "fired"
    code = f"import json,sys; open({str(record)!r}, 'a').write(json.load(sys.stdin)['state'] + '\\n')"
    job = {"program": {"type": "no-op"},
           "action": {"type": "command", "argv": [sys.executable, "-c", code]}}
    daemon = apsis_daemon({"job": json.dumps(job)})
    with http(daemon) as api:
        run = create(api, "job")[0]
        assert wait_run(api, run["run_id"])["state"] == "success"
        deadline = time.monotonic() + 10
        while not (record.exists() and record.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second firing, if any, would land by now
    assert record.read_text().split() == ["success"]


# ------------------------------------------------------------------ §1.3, §1.11 serving

FULL_CONFIG = """\
jobs: jobs
database: apsis.db
bind: 127.0.0.1:1
schedule: {horizon: 1d, since: clock, max_age: 7d}
runs: {retain: 90d, archive: archive.db}
output: {max_bytes: 64MiB}
waiting: {max_time: null}
action: []
api:
  tokens: {t-read-0123456789abcdef: read, t-operate-0123456789abcdef: operate, t-admin-0123456789abcdef: admin}
watch_jobs: true
log: {file: apsis.log, level: info}
"""


def test_every_config_key_is_accepted_and_since_is_checked(apsis_daemon):
    daemon = apsis_daemon({"noop": JOBS["noop"]}, config=FULL_CONFIG, token="t-read-0123456789abcdef",
                          args=["--since", "-1d"])
    with http(daemon, token="t-read-0123456789abcdef") as api:
        assert api.get("/alive").status_code == 200
    assert (daemon.root / "apsis.log").exists()
    # A bad `schedule.since` is a config error: one message, exit 2, no traceback.
    bad = daemon.root / "bad.yaml"
    bad.write_text("schedule: {since: garbage}\n")
    result = subprocess.run(
        [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--config", str(bad), "--jobs",
         str(daemon.jobs_dir), "--db", str(daemon.root / "other.db"), "--bind",
         f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert "since" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_bind_or_log_level_is_a_located_config_error(tmp_path):
    # `bind: nonsense` was a traceback, a port above 65535 a traceback and a hung
    # daemon, `log.level: loud` was taken silently.
    config = tmp_path / "apsis.yaml"
    for text, where in [("bind: nonsense\n", "apsis.yaml:1:7: bind:"),
                        ("bind: 127.0.0.1:70000\n", "apsis.yaml:1:7: bind:"),
                        ("log: {level: loud}\n", "apsis.yaml:1:14: level:")]:
        config.write_text(text)
        result = _serve(tmp_path, "--config", str(config))
        assert result.returncode == 2, (text, result.stderr)
        assert where in result.stderr and "Traceback" not in result.stderr, result.stderr
    config.write_text("")
    flag = _serve(tmp_path, "--config", str(config), "--bind", "127.0.0.1:99999")
    assert flag.returncode == 2 and "--bind must be HOST:PORT" in flag.stderr, flag.stderr


def test_a_missing_folder_or_tls_file_is_one_line(tmp_path):
    config = tmp_path / "apsis.yaml"
    config.write_text("log: {file: nowhere/apsis.log}\n")
    tls = tmp_path / "tls.yaml"
    tls.write_text("api: {tls: {cert: nowhere/cert.pem, key: nowhere/key.pem}}\n")
    for args, message in [(["--db", str(tmp_path / "nowhere/apsis.db")], "no folder {} for apsis.db"),
                          (["--config", str(config)], "no folder {} for apsis.log"),
                          (["--config", str(tls)], "no file {}/cert.pem for api.tls")]:
        result = subprocess.run(
            [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(tmp_path),
             "--bind", f"127.0.0.1:{free_port()}", *args],
            capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert message.format(tmp_path / "nowhere") in result.stderr


def _serve(tmp_path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "jobs").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(tmp_path / "jobs"),
         "--db", str(tmp_path / "apsis.db"), *args],
        capture_output=True, text=True, timeout=30, cwd=tmp_path)


def test_non_loopback_bind_needs_tokens_and_tls_or_insecure(tmp_path, apsis_daemon):
    port = free_port()
    refused = _serve(tmp_path, "--bind", f"0.0.0.0:{port}")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "0.0.0.0" in refused.stderr and "--insecure" in refused.stderr
    (tmp_path / "tokens.yaml").write_text("api: {tokens: {t-admin-0123456789abcdef: admin}}\n")
    tokens_only = _serve(tmp_path, "--bind", f"0.0.0.0:{port}", "--config",
                         str(tmp_path / "tokens.yaml"))
    assert tokens_only.returncode != 0 and "tls" in tokens_only.stderr.lower()
    # --insecure starts it.
    daemon = apsis_daemon({"noop": JOBS["noop"]}, start=False)
    daemon.extra_args = ["--bind", f"0.0.0.0:{daemon.port}", "--insecure"]
    daemon.start()
    with http(daemon) as api:
        assert api.get("/alive").status_code == 200


def test_finished_states_are_the_four(api):
    run = create(api, "fails")[0]
    done = wait_run(api, run["run_id"])
    assert done["state"] == "failure" and done["exit_code"] == 3 and done["state"] in FINISHED
