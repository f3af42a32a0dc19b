"""Ad hoc jobs are jobs (issue 12 item 10): `POST /runs {"job": ...}` gives a job id that
`GET /jobs/{id}` and `POST /runs {"job_id": id}` answer, also after a restart."""

from __future__ import annotations

import pytest

from .helpers import assert_error, create, http, wait_run

pytestmark = pytest.mark.timeout(90)

# An inline job as Apsis users write job files.
INLINE = {
    "params": ["date"],
    "program": {"type": "shell", "command": "echo adhoc {{ date }}"},
    "metadata": {"description": "a one-off"},
}


def test_an_adhoc_job_is_readable_and_runnable_by_id_across_a_restart(apsis_daemon):
    daemon = apsis_daemon({"kept": "program: {type: no-op}\n", "dropped": "program: {type: no-op}\n"})
    with http(daemon) as api:
        [first] = create_inline(api, {"job": INLINE, "args": {"date": "2024-04-20"}})
        job_id = first["job_id"]
        assert wait_run(api, first["run_id"])["state"] == "success"

        job = api.get(f"/jobs/{job_id}")
        assert job.status_code == 200, job.text
        assert job.json()["program"]["command"] == "echo adhoc {{ date }}"
        assert "ad-hoc" in job.json()["metadata"]["labels"]

        [second] = create(api, job_id, args={"date": "2024-04-21"})
        assert second["job_id"] == job_id
        assert wait_run(api, second["run_id"])["state"] == "success"
        assert api.get(f"/runs/{second['run_id']}/output/output").content == b"adhoc 2024-04-21\n"

        # A job of the jobs directory that is removed stays removed.
        [dropped] = create(api, "dropped")
        wait_run(api, dropped["run_id"])
        (daemon.jobs_dir / "dropped.yaml").unlink()

    daemon.restart()
    with http(daemon) as api:
        assert api.get(f"/jobs/{job_id}").status_code == 200
        [third] = create(api, job_id, args={"date": "2024-04-22"})
        assert wait_run(api, third["run_id"])["state"] == "success"
        assert_error(api.get("/jobs/dropped"), 404, "unknown_job")
        assert_error(api.post("/runs", json={"job_id": "dropped"}), 404, "unknown_job")
        assert_error(api.get("/jobs/adhoc/000000000000"), 404, "unknown_job")


def create_inline(api, body):
    response = api.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["runs"]
