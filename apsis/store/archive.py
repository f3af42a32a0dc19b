"""Moving runs to the archive database, one chunk at a time.

Both functions run inside a write transaction of the main connection, with the archive
attached as `arch`. A transaction that writes only `arch` commits only there, so a chunk
is first copied (and committed in the archive), then deleted here: a crash between the
two leaves a run in both files, and the next archive copies it again from scratch.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from apsis.store.keys import json_list


def default_archive_path(database: str | Path) -> Path:
    """Where runs are archived when apsis.yaml names no `runs.archive`: beside the database."""
    path = Path(database)
    return path.with_name(path.stem + ".archive" + path.suffix)


async def copy_to_archive(conn: aiosqlite.Connection, nums: str) -> None:
    """Copies runs (a JSON list of run numbers) and what hangs off them into `arch`."""
    in_nums = "run_num IN (SELECT value FROM json_each(?))"
    # A run left in both by an interrupted archive is copied again, from scratch.
    await conn.execute(f"DELETE FROM arch.runs WHERE {in_nums}", (nums,))
    await conn.execute(
        "INSERT OR IGNORE INTO arch.jobdefs (hash, job) SELECT hash, job FROM main.jobdefs "
        f"WHERE jobdef_id IN (SELECT jobdef_id FROM main.runs WHERE {in_nums})",
        (nums,),
    )
    # Job definition ids differ between the files; the hash maps one to the other.
    await conn.execute(
        "INSERT INTO arch.runs (run_num, job_id, state, sort_time, jobdef_id, run) "
        "SELECT r.run_num, r.job_id, r.state, r.sort_time, "
        "(SELECT a.jobdef_id FROM arch.jobdefs a JOIN main.jobdefs m ON a.hash = m.hash "
        "WHERE m.jobdef_id = r.jobdef_id), r.run "
        f"FROM main.runs r WHERE r.{in_nums}",
        (nums,),
    )
    await conn.execute(
        "INSERT INTO arch.run_log (run_num, ts, state, message) "
        f"SELECT run_num, ts, state, message FROM main.run_log WHERE {in_nums} ORDER BY entry_id",
        (nums,),
    )
    await conn.execute(
        "INSERT INTO arch.outputs "
        "(run_num, output_id, gen, length, original_length, content_type) "
        "SELECT run_num, output_id, gen, length, original_length, content_type "
        f"FROM main.outputs WHERE {in_nums}",
        (nums,),
    )
    await conn.execute(
        "INSERT INTO arch.output_chunks "
        "(run_num, output_id, gen, chunk_no, start, length, data) "
        "SELECT c.run_num, c.output_id, c.gen, c.chunk_no, c.start, c.length, c.data "
        "FROM main.output_chunks c JOIN main.outputs o ON o.run_num = c.run_num "
        f"AND o.output_id = c.output_id AND o.gen = c.gen WHERE c.{in_nums}",
        (nums,),
    )


async def delete_runs(conn: aiosqlite.Connection, nums: str) -> None:
    """Deletes runs (cascading to their rows) and job definitions no run uses any more."""
    in_nums = "run_num IN (SELECT value FROM json_each(?))"
    rows = await conn.execute_fetchall(
        f"SELECT DISTINCT jobdef_id FROM main.runs WHERE {in_nums} AND jobdef_id IS NOT NULL",
        (nums,),
    )
    await conn.execute(f"DELETE FROM main.runs WHERE {in_nums}", (nums,))
    await conn.execute(
        "DELETE FROM main.jobdefs WHERE jobdef_id IN (SELECT value FROM json_each(?)) "
        "AND NOT EXISTS (SELECT 1 FROM main.runs r WHERE r.jobdef_id = jobdefs.jobdef_id)",
        (json_list(jobdef_id for (jobdef_id,) in rows),),
    )
