"""POST /control/archive: the daemon moves old finished runs to its archive database."""

from __future__ import annotations

from apsis.store import default_archive_path

from .helpers import assert_error, create, http, wait_run

JOBS = {"quick": "program: {type: no-op}\n"}


def test_archive_moves_finished_runs_and_keeps_the_rest(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    with http(daemon) as api:
        done = create(api, "quick")[0]["run_id"]
        wait_run(api, done)
        later = create(api, "quick", times={"schedule": "+1h"})[0]["run_id"]

        assert_error(api.post("/control/archive"), 400, "bad_param")
        assert_error(api.post("/control/archive", params={"older_than": "soon"}), 400, "bad_param")
        assert_error(api.post("/control/archive", params={"older_than": "9" * 30 + "w"}), 400)

        kept = api.post("/control/archive", params={"older_than": "1d"})
        assert kept.status_code == 200, kept.text
        assert kept.json()["moved"] == 0

        moved = api.post("/control/archive", params={"older_than": "0s"})
        assert moved.status_code == 200, moved.text
        body = moved.json()
        assert body["moved"] == 1
        # Relative to the daemon's directory on PostgreSQL (beside its local anchor, apsis.db).
        assert daemon.root / body["archive"] == default_archive_path(daemon.db)
        assert_error(api.get(f"/runs/{done}"), 404)
        assert api.get(f"/runs/{later}").json()["state"] == "scheduled"
        # The daemon goes on: a new run still runs and finishes.
        again = create(api, "quick")[0]["run_id"]
        assert wait_run(api, again)["state"] == "success"
