"""`apsisctl db migrate | check | archive | vacuum` on real SQLite files (no daemon)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from apsis.store.lock import DatabaseLock

from .helpers import apsisctl

ROOT = Path(__file__).resolve().parents[2]


def _build_db(path: Path, runs: int) -> None:
    """A database of `runs` finished runs from 2020 on (the store benchmark's builder)."""
    spec = importlib.util.spec_from_file_location("store_1m", ROOT / "bench" / "store_1m.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.build_db(str(path), runs)


def test_migrate_creates_and_check_reports(tmp_path):
    db = tmp_path / "new.db"
    created = apsisctl(None, "db", "migrate", "--db", str(db))
    assert created.returncode == 0, created.stderr
    assert db.exists() and "created" in created.stderr
    again = apsisctl(None, "db", "migrate", "--db", str(db))
    assert again.returncode == 0 and "migrated" in again.stderr
    check = apsisctl(None, "db", "check", "--db", str(db), "--json")
    assert check.returncode == 0
    doc = json.loads(check.stdout)
    assert doc["ok"] is True and doc["stats"]["runs"] == 0


def test_check_of_a_missing_file_is_a_user_error(tmp_path):
    result = apsisctl(None, "db", "check", "--db", str(tmp_path / "nope.db"))
    assert result.returncode == 2
    assert "no database" in result.stderr and "Traceback" not in result.stderr


def test_archive_moves_old_runs_then_vacuum(tmp_path):
    db, archive = tmp_path / "apsis.db", tmp_path / "old.db"
    _build_db(db, 300)
    moved = apsisctl(None, "db", "archive", "--db", str(db), "--archive", str(archive),
                     "--older-than", "1d", "--chunk", "100")
    assert moved.returncode == 0, moved.stderr
    assert "moved 300 run(s)" in moved.stderr
    left = json.loads(apsisctl(None, "db", "check", "--db", str(db), "--json").stdout)
    assert left["ok"] and left["stats"]["runs"] == 0
    kept = json.loads(apsisctl(None, "db", "check", "--db", str(archive), "--json").stdout)
    assert kept["stats"]["runs"] == 300
    vacuum = apsisctl(None, "db", "vacuum", "--db", str(db))
    assert vacuum.returncode == 0, vacuum.stderr


def test_writing_commands_refuse_a_database_in_use(tmp_path):
    db = tmp_path / "apsis.db"
    assert apsisctl(None, "db", "migrate", "--db", str(db)).returncode == 0
    lock = DatabaseLock(str(db))
    lock.acquire()  # as a running daemon holds it
    try:
        result = apsisctl(None, "db", "vacuum", "--db", str(db))
        assert result.returncode == 1
        assert "apsisctl shutdown" in result.stderr and "Traceback" not in result.stderr
        # check opens read-only, so it works beside a live daemon
        assert apsisctl(None, "db", "check", "--db", str(db)).returncode == 0
    finally:
        lock.release()


def test_config_names_the_database(tmp_path):
    (tmp_path / "apsis.yaml").write_text("database: from-config.db\n")
    result = apsisctl(None, "db", "migrate", "--config", str(tmp_path / "apsis.yaml"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-config.db").exists()


def test_archive_beside_a_running_daemon_goes_through_it(apsis_daemon, tmp_path):
    from tests.integration.helpers import create, http, wait_run

    daemon = apsis_daemon({"quick": "program: {type: no-op}\n"})
    with http(daemon) as api:
        done = create(api, "quick")[0]["run_id"]
        wait_run(api, done)

        # The daemon archives to its own runs.archive: another file cannot be honoured.
        refused = apsisctl(daemon.url, "db", "archive", "--db", str(daemon.db),
                           "--archive", str(tmp_path / "mine.db"), "--older-than", "0s")
        assert refused.returncode == 2 and "drop --archive" in refused.stderr

        # A daemon at --url that serves another database is not asked.
        other = apsis_daemon({"quick": "program: {type: no-op}\n"})
        wrong = apsisctl(other.url, "db", "archive", "--db", str(daemon.db), "--older-than", "0s")
        assert wrong.returncode != 0 and "not" in wrong.stderr and str(daemon.db) in wrong.stderr
        assert api.get(f"/runs/{done}").status_code == 200

        result = apsisctl(daemon.url, "db", "archive", "--db", str(daemon.db), "--older-than", "0s")
        assert result.returncode == 0, result.stderr
        assert "archiving through it" in result.stderr and "moved 1 run(s)" in result.stderr
        assert api.get(f"/runs/{done}").status_code == 404
