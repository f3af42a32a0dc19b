"""Every HTTP route of /api/v1 and every error status, against a real daemon."""

from __future__ import annotations

import time

from urllib.parse import quote

import httpx
import pytest

from .helpers import FINISHED, assert_error, create, http, wait_run, wait_runs

JOBS = {
    "noop": "program: {type: no-op}\nmetadata: {labels: [quick]}\n",
    "data/load prices": (
        "params: [date]\n"
        "program: {type: no-op}\n"
        "metadata: {labels: [prices, daily], description: loads prices}\n"
        "schedule: {type: interval, interval: 1h, enabled: false}\n"
    ),
    "long": "program: {type: no-op, duration: 600}\n",
    "sleeper": "program: {type: shell, command: 'sleep 30'}\n",
    "echo": "program: \"printf 'hello\\\\nworld\\\\n'\"\n",
    "fails": "program: {type: no-op, success: false}\n",
}


def test_alive(api):
    body = api.get("/alive").json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str) and isinstance(body["seq"], int)


def test_jobs(api):
    jobs = api.get("/jobs").json()["jobs"]
    assert [j["job_id"] for j in jobs] == sorted(JOBS)
    labelled = api.get("/jobs", params={"label": "prices"}).json()["jobs"]
    assert [j["job_id"] for j in labelled] == ["data/load prices"]
    both = api.get("/jobs", params=[("label", "prices"), ("label", "nope")]).json()["jobs"]
    assert both == []


def test_job_by_exact_id_with_slash_and_space(api):
    job = api.get("/jobs/" + quote("data/load prices")).json()
    assert job["job_id"] == "data/load prices"
    assert job["params"] == ["date"]
    assert job["metadata"]["labels"] == ["prices", "daily"]
    # The file as written, comments and all; only here, not in the list.
    assert job["source"] == JOBS["data/load prices"]
    assert all("source" not in j for j in api.get("/jobs").json()["jobs"])
    # %2F for the slash works too; a prefix is not fuzzy-matched.
    assert api.get("/jobs/data%2Fload%20prices").status_code == 200
    assert_error(api.get("/jobs/data/load"), 404, "unknown_job")
    assert_error(api.get("/jobs/nope"), 404)


def test_job_schedule_window(api):
    path = "/jobs/" + quote("data/load prices") + "/schedule"
    # The schedule is disabled: nothing expected.
    assert api.get(path).json()["runs"] == []
    assert_error(api.get(path, params={"from": "yesterday"}), 400, "bad_time")
    assert_error(api.get(path, params={"limit": "0"}), 400)
    assert_error(api.get("/jobs/nope/schedule"), 404)


def test_create_runs_and_get(api):
    runs = create(api, "noop", count=3)
    assert len(runs) == 3 and len({r["run_id"] for r in runs}) == 3
    for run in runs:
        # 201 means committed: each is readable at once.
        got = api.get(f"/runs/{run['run_id']}").json()
        assert got["job_id"] == "noop"
        assert set(got) >= {"run_id", "job_id", "args", "state", "labels", "times", "message",
                            "program", "conditions", "actions", "rerun_of", "attempt",
                            "exit_code", "signal", "outputs", "ad_hoc"}
        assert "meta" not in got and "job" not in got
    done = wait_run(api, runs[0]["run_id"])
    assert done["state"] == "success"
    log = api.get(f"/runs/{runs[0]['run_id']}/log").json()["log"]
    assert [e["state"] for e in log if e["state"]] == ["scheduled", "starting", "running", "success"]


def test_create_runs_with_args_and_times(api):
    [run] = create(api, "data/load prices", args={"date": "2026-01-02"},
                   times={"schedule": "+1h", "stop": "+2h"})
    assert run["args"] == {"date": "2026-01-02"}
    assert run["state"] == "scheduled"
    assert "stop" in run["times"]
    api.post(f"/runs/{run['run_id']}/skip")


@pytest.mark.parametrize("body, status, code", [
    ({"job_id": "nope"}, 404, "unknown_job"),
    ({"job_id": "data/load prices"}, 422, "bad_args"),
    ({"job_id": "noop", "args": {"x": "1"}}, 422, "bad_args"),
    ({"job_id": "noop", "args": {"x": 1}}, 400, "bad_body"),
    ({"job_id": "noop", "args": []}, 400, "bad_body"),
    ({"job_id": 3}, 400, "bad_body"),
    ({}, 400, "bad_body"),
    ({"job_id": "noop", "job": {"program": "true"}}, 400, "bad_body"),
    ({"job_id": "noop", "count": 0}, 400, "bad_body"),
    ({"job_id": "noop", "count": "2"}, 400, "bad_body"),
    ({"job_id": "noop", "count": 10**6}, 400, "bad_body"),
    ({"job_id": "noop", "times": {"schedule": "tomorrow"}}, 400, "bad_time"),
    ({"job_id": "noop", "times": {"schedule": 5}}, 400, "bad_time"),
    ({"job_id": "noop", "times": {"when": "now"}}, 400, "bad_body"),
    ({"job_id": "noop", "times": {"schedule": "+1h", "stop": "now"}}, 400, "bad_time"),
    ({"job_id": "noop", "extra": 1}, 400, "bad_body"),
    ({"job": {"program": {"type": "nope"}}}, 422, "invalid_job"),
    ({"job": {"program": {"type": "no-op"}, "job_id": "noop"}}, 409, "job_exists"),
    ({"job": "true"}, 400, "bad_body"),
])
def test_create_runs_errors(api, body, status, code):
    assert_error(api.post("/runs", json=body), status, code)


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"null", b"\xff\xfe", b"{" * 100000,
                                     b" " * (2 * 1024 * 1024)])
def test_create_runs_malformed_json(api, content):
    response = api.post("/runs", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 413), response.text
    assert_error(response, response.status_code)


def test_inline_adhoc_job(api):
    response = api.post("/runs", json={"job": {"program": {"type": "no-op"},
                                               "metadata": {"labels": ["mine"]}}})
    assert response.status_code == 201, response.text
    [run] = response.json()["runs"]
    assert run["job_id"].startswith("adhoc/")
    assert run["ad_hoc"] is True
    assert set(run["labels"]) == {"mine", "ad-hoc"}
    assert wait_run(api, run["run_id"])["state"] == "success"
    named = api.post("/runs", json={"job": {"program": {"type": "no-op"}, "job_id": "tmp/x"},
                                    "count": 2}).json()["runs"]
    assert [r["job_id"] for r in named] == ["tmp/x", "tmp/x"]
    # An ad hoc run can be rerun though its job is in no file.
    wait_run(api, named[0]["run_id"])
    rerun = api.post(f"/runs/{named[0]['run_id']}/rerun").json()
    assert rerun["job_id"] == "tmp/x" and rerun["rerun_of"] == named[0]["run_id"]


def test_list_runs_filters_and_pages(api):
    created = create(api, "data/load prices", args={"date": "2031-05-01"}, count=5,
                     times={"schedule": "2031-05-01T00:00:00Z"})
    ids = {r["run_id"] for r in created}
    page = api.get("/runs", params={"job_id": "data/load prices", "arg.date": "2031-05-01"}).json()
    assert {r["run_id"] for r in page["runs"]} == ids
    assert isinstance(page["seq"], int) and page["cursor"] is None
    # Pagination: newest first, pages of 2, no overlap, all found.
    seen, cursor = [], None
    while True:
        params = {"arg.date": "2031-05-01", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/runs", params=params).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert seen == sorted(seen, key=lambda r: -int(r[1:]))
    by_label = api.get("/runs", params=[("label", "prices"), ("arg.date", "2031-05-01")]).json()
    assert len(by_label["runs"]) == 5
    window = api.get("/runs", params={"since": "2031-05-01T00:00:00Z",
                                      "until": "2031-05-01T00:00:01Z"}).json()
    assert {r["run_id"] for r in window["runs"]} >= ids
    states = api.get("/runs", params=[("state", "scheduled"), ("state", "waiting"),
                                      ("arg.date", "2031-05-01")]).json()
    assert len(states["runs"]) == 5
    assert api.get("/runs", params={"state": "success", "arg.date": "2031-05-01"}).json()["runs"] == []
    for run_id in ids:
        api.post(f"/runs/{run_id}/skip")


def test_list_runs_of_several_jobs(api):
    """A repeated job_id (how `apsis runs FOLDER/` asks for a folder): runs of any of them,
    newest first, in one page and across pages."""
    times = {"schedule": "2032-01-01T00:00:00Z"}
    prices = {r["run_id"] for r in create(api, "data/load prices", args={"date": "2032"},
                                         count=3, times=times)}
    noops = {r["run_id"] for r in create(api, "noop", count=2, times=times)}
    other = {r["run_id"] for r in create(api, "fails", count=1, times=times)}
    params = [("job_id", "data/load prices"), ("job_id", "noop"), ("since", times["schedule"])]
    page = api.get("/runs", params=params).json()
    assert [r["run_id"] for r in page["runs"]] == sorted(prices | noops, key=lambda r: -int(r[1:]))
    seen, cursor = [], None
    while True:
        more = api.get("/runs", params=params + [("limit", 2)] + ([("cursor", cursor)] if cursor else [])).json()
        seen += [r["run_id"] for r in more["runs"]]
        if (cursor := more["cursor"]) is None:
            break
    assert seen == [r["run_id"] for r in page["runs"]]
    for run_id in prices | noops | other:
        api.post(f"/runs/{run_id}/skip")


@pytest.mark.parametrize("params, code", [
    ({"state": "bogus"}, "bad_state_name"),
    ({"state": "SUCCESS"}, "bad_state_name"),
    ({"limit": "0"}, "bad_param"),
    ({"limit": "abc"}, "bad_param"),
    ({"limit": "100001"}, "bad_param"),
    ({"cursor": "!!!"}, "bad_cursor"),
    ({"since": "last tuesday"}, "bad_time"),
    ({"job": "noop"}, "bad_param"),
    ({"arg.": "x"}, "bad_param"),
])
def test_list_runs_errors(api, params, code):
    assert_error(api.get("/runs", params=params), 400, code)


@pytest.mark.parametrize("run_id", ["r999999", "bogus", "r", "r-1", "123"])
def test_unknown_runs(api, run_id):
    for path in ("", "/log", "/outputs", "/output/output"):
        assert_error(api.get(f"/runs/{run_id}{path}"), 404, "unknown_run")
    for op in ("skip", "start", "stop", "rerun", "signal/SIGTERM", "mark/failure"):
        assert_error(api.post(f"/runs/{run_id}/{op}"), 404)


def test_skip_and_start(api):
    [a, b] = create(api, "noop", count=2, times={"schedule": "+1h"})
    skipped = api.post(f"/runs/{a['run_id']}/skip").json()
    assert skipped["state"] == "skipped"
    assert_error(api.post(f"/runs/{a['run_id']}/skip"), 409, "bad_state")
    assert_error(api.post(f"/runs/{a['run_id']}/start"), 409, "bad_state")
    started = api.post(f"/runs/{b['run_id']}/start").json()
    assert started["state"] in ("starting", "running", "success")
    assert wait_run(api, b["run_id"])["state"] == "success"


def test_stop_and_signal(api):
    [run] = create(api, "long")
    wait_run(api, run["run_id"], {"running"})
    # A no-op has no process to signal.
    assert_error(api.post(f"/runs/{run['run_id']}/signal/SIGTERM"), 409)
    stopped = api.post(f"/runs/{run['run_id']}/stop").json()
    assert stopped["state"] in ("stopping", "success")
    assert wait_run(api, run["run_id"])["state"] == "success"
    assert_error(api.post(f"/runs/{run['run_id']}/stop"), 409, "bad_state")

    [sleeper] = create(api, "sleeper")
    wait_run(api, sleeper["run_id"], {"running"})
    assert_error(api.post(f"/runs/{sleeper['run_id']}/signal/NOPE"), 422, "bad_signal")
    response = api.post(f"/runs/{sleeper['run_id']}/signal/KILL")
    assert response.status_code == 200, response.text
    done = wait_run(api, sleeper["run_id"])
    assert done["state"] == "failure" and done["signal"] == "SIGKILL"


def test_mark_and_rerun(api):
    [run] = create(api, "fails")
    assert wait_run(api, run["run_id"])["state"] == "failure"
    marked = api.post(f"/runs/{run['run_id']}/mark/success").json()
    assert marked["state"] == "success"
    assert_error(api.post(f"/runs/{run['run_id']}/mark/success"), 409, "bad_state")
    assert_error(api.post(f"/runs/{run['run_id']}/mark/running"), 422)
    assert_error(api.post(f"/runs/{run['run_id']}/mark/Success"), 422)
    rerun = api.post(f"/runs/{run['run_id']}/rerun").json()
    assert rerun["rerun_of"] == run["run_id"] and rerun["attempt"] == 2
    assert rerun["run_id"] != run["run_id"]
    [later] = create(api, "noop", times={"schedule": "+1h"})
    assert_error(api.post(f"/runs/{later['run_id']}/rerun"), 409, "bad_state")
    assert_error(api.post(f"/runs/{later['run_id']}/mark/success"), 409, "bad_state")
    api.post(f"/runs/{later['run_id']}/skip")


def test_output_range(api):
    [run] = create(api, "echo")
    assert wait_run(api, run["run_id"])["state"] == "success"
    outputs = api.get(f"/runs/{run['run_id']}/outputs").json()["outputs"]
    assert outputs[0]["output_id"] == "output" and outputs[0]["length"] == 12
    path = f"/runs/{run['run_id']}/output/output"
    response = api.get(path)
    assert response.content == b"hello\nworld\n"
    assert response.headers["content-type"] == "application/octet-stream"
    assert api.get(path, params={"start": 6}).content == b"world\n"
    assert api.get(path, params={"start": 2, "end": 4}).content == b"ll"
    assert api.get(path, params={"start": 100}).content == b""
    assert_error(api.get(path, params={"start": -1}), 400)
    assert_error(api.get(path, params={"start": 5, "end": 2}), 400)
    assert_error(api.get(f"/runs/{run['run_id']}/output/nope"), 404, "unknown_output")


def test_control(api, daemon):
    stats = api.get("/control/stats").json()
    assert stats["jobs"] == len(JOBS) and stats["store"]["runs"] >= 0
    assert isinstance(stats["last_seq"], int)
    daemon.write_job("new/one", "program: {type: no-op}\n")
    dry = api.post("/control/reload", params={"dry_run": "true"}).json()
    assert dry["added"] == ["new/one"] and dry["dry_run"] is True
    assert_error(api.get("/jobs/new/one"), 404)
    result = api.post("/control/reload").json()
    assert result["added"] == ["new/one"] or api.get("/jobs/new/one").status_code == 200
    assert api.get("/jobs/new/one").status_code == 200
    assert_error(api.post("/control/reload", params={"dry_run": "maybe"}), 400)


def test_metrics(api):
    create(api, "noop")
    text = api.get("/metrics").text
    for name in ("apsis_runs{state=\"success\"}", "apsis_schedule_lag_seconds_bucket",
                 "apsis_event_loop_lag_seconds_bucket", "apsis_db_commit_seconds",
                 "apsis_events_last_seq", "apsis_event_subscribers"):
        assert name in text, name
    assert all(line.startswith(("#", "apsis_")) for line in text.splitlines() if line)


def test_routing_errors(api):
    assert_error(api.get("/nope"), 404, "not_found")
    response = api.delete("/runs")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    assert_error(api.get("/events"), 426, "upgrade_required")
    assert_error(api.get("/alive", params={"x": "1"}), 400, "bad_param")


def test_shutdown_and_restart_code(apsis_daemon):
    daemon = apsis_daemon({"noop": "program: {type: no-op}\n"})
    with http(daemon) as api:
        assert_error(api.post("/control/shutdown", params={"restart": "yes"}), 400)
        response = api.post("/control/shutdown", params={"restart": "true"})
        assert response.status_code == 202 and response.json() == {"status": "stopping",
                                                                   "restart": True}
    # The same process starts again by itself (it re-executes its own command).
    pid, first_start = daemon.pid, None
    deadline = time.monotonic() + 30
    with http(daemon) as api:
        while True:
            try:
                alive = api.get("/alive").json()
                first_start = first_start or alive["started_at"]
                if alive["started_at"] != first_start:
                    break
            except httpx.TransportError:
                first_start = first_start or "down"
            assert time.monotonic() < deadline, "the daemon did not come back"
            time.sleep(0.1)
        assert daemon.running and daemon.pid == pid
        assert api.post("/control/shutdown").json()["restart"] is False
    assert daemon.wait_exit() == 0


TOKENS_CONFIG = """
api:
  tokens:
    r-token-0123456789abcdef: read
    o-token-0123456789abcdef: operate
    a-token-0123456789abcdef: admin
"""


def test_tokens_and_roles(apsis_daemon):
    daemon = apsis_daemon({"noop": "program: {type: no-op}\n"}, config=TOKENS_CONFIG,
                          token="r-token-0123456789abcdef")

    def call(token, method, path, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, daemon.api + path, headers=headers, timeout=10, **kw)

    for path in ("/alive", "/jobs", "/runs", "/control/stats", "/metrics"):
        assert_error(call(None, "GET", path), 401, "unauthorized")
        assert_error(call("wrong", "GET", path), 401, "unauthorized")
        assert call("r-token-0123456789abcdef", "GET", path).status_code == 200
    assert call(None, "GET", "/openapi.json").status_code == 200
    assert_error(call("Basic r-token-0123456789abcdef", "GET", "/jobs"), 401)
    new_run = {"json": {"job_id": "noop"}}
    inline = {"json": {"job": {"program": {"type": "no-op"}}}}
    assert_error(call("r-token-0123456789abcdef", "POST", "/runs", **new_run), 403, "forbidden")
    assert call("o-token-0123456789abcdef", "POST", "/runs", **new_run).status_code == 201
    assert_error(call("o-token-0123456789abcdef", "POST", "/runs", **inline), 403, "forbidden")
    assert call("a-token-0123456789abcdef", "POST", "/runs", **inline).status_code == 201
    assert_error(call("r-token-0123456789abcdef", "POST", "/runs/r1/skip"), 403)
    assert_error(call("o-token-0123456789abcdef", "POST", "/control/reload"), 403)
    assert call("a-token-0123456789abcdef", "POST", "/control/reload").status_code == 200
    assert_error(call("o-token-0123456789abcdef", "POST", "/control/shutdown"), 403)
    # The token never appears in the log.
    assert "r-token-0123456789abcdef" not in daemon.log_text() and "a-token-0123456789abcdef" not in daemon.log_text()


def test_unknown_paths_do_not_leak_500(api):
    for path in ("/runs/r1/output/", "/jobs/", "/runs/%00", "/jobs/%ff%fe"):
        assert api.get(path).status_code < 500


def test_a_batch_of_runs_all_finish(api):
    runs = create(api, "noop", count=20)
    wait_runs(api, "noop", 20)
    for run in runs:
        assert api.get(f"/runs/{run['run_id']}").json()["state"] in FINISHED
