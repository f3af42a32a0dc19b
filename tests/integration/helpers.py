"""Small waits and requests the integration tests share."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINISHED = {"success", "failure", "error", "skipped"}


def http(daemon: Any, token: str | None = None) -> httpx.Client:
    """A sync client on the daemon's /api/v1 (TCP daemons)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=daemon.api, headers=headers, timeout=30.0)


def wait_run(api: httpx.Client, run_id: str, states: set[str] = FINISHED,
             timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/runs/{run_id}").json()
        if run["state"] in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_id} is still {run['state']} after {timeout}s")
        time.sleep(0.05)


def wait_runs(api: httpx.Client, job_id: str, count: int, state: str = "success",
              timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page = api.get("/runs", params={"job_id": job_id, "state": state, "limit": 10000}).json()
        if len(page["runs"]) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(page['runs'])} of {count} runs of {job_id} are {state}")
        time.sleep(0.1)


def create(api: httpx.Client, job_id: str, **body: Any) -> list[dict[str, Any]]:
    response = api.post("/runs", json={"job_id": job_id, **body})
    assert response.status_code == 201, response.text
    return response.json()["runs"]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error
