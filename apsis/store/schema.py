"""The database schema, as an ordered list of migrations.

Migration N (1-based) takes a database from version N-1 to N. Append new ones; never
edit one that has shipped. Opening a database only reads `schema_version`, so a large
database opens as fast as an empty one.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from apsis.store.errors import StoreError

# Version 1: everything the store needs.
#
# runs: the whole run JSON in `run`, plus the columns the queries filter and sort on.
#   `run_num` is the integer of the run id (r123 -> 123), so it is also the rowid.
#   `sort_time` is the schedule time (else the creation time) normalised to UTC,
#   `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so that text order is time order.
#   The time-ordered indexes name `run_num` so that they give the full sort order
#   (time, then run number) and end with `state`, so that a state filter along the
#   scan needs no table lookups.
# run_args / run_labels: kept in step with the run JSON by triggers, so every
#   writer (the engine, the archiver, a bulk loader) gets them for free.
# run_counts: kept by triggers, so metrics never count a million rows.
# events: `seq` is AUTOINCREMENT, so a seq is never reused, even after a trim.
# outputs / output_chunks: each output is zlib-compressed in independent chunks of
#   at most CHUNK_SIZE bytes (of the stored stream), so a range read decompresses only
#   the chunks it touches. `gen` lets a new version of an output be written beside the
#   old one and switched to in one short transaction.
_V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value
);
INSERT INTO meta (key, value) VALUES ('next_run_num', 1);

CREATE TABLE jobdefs (
    jobdef_id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    job TEXT NOT NULL
);

CREATE TABLE runs (
    run_num INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    sort_time TEXT NOT NULL,
    jobdef_id INTEGER REFERENCES jobdefs (jobdef_id),
    run TEXT NOT NULL
);
CREATE INDEX runs_time ON runs (sort_time, run_num, state);
CREATE INDEX runs_job_time ON runs (job_id, sort_time, run_num, state);
CREATE INDEX runs_state_time ON runs (state, sort_time);
CREATE INDEX runs_jobdef ON runs (jobdef_id);

CREATE TABLE run_args (
    run_num INTEGER NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value,
    PRIMARY KEY (run_num, name)
) WITHOUT ROWID;
CREATE INDEX run_args_value ON run_args (name, value);

CREATE TABLE run_labels (
    run_num INTEGER NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (run_num, label)
) WITHOUT ROWID;
CREATE INDEX run_labels_label ON run_labels (label);

CREATE TABLE run_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);

CREATE TRIGGER runs_after_insert AFTER INSERT ON runs BEGIN
    INSERT INTO run_counts (state, n) VALUES (new.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
    INSERT INTO run_args (run_num, name, value)
        SELECT new.run_num, key, value FROM json_each(new.run, '$.args');
    INSERT INTO run_labels (run_num, label)
        SELECT DISTINCT new.run_num, value FROM json_each(new.run, '$.labels');
END;

CREATE TRIGGER runs_after_delete AFTER DELETE ON runs BEGIN
    UPDATE run_counts SET n = n - 1 WHERE state = old.state;
END;

CREATE TRIGGER runs_after_state AFTER UPDATE OF state ON runs
WHEN old.state IS NOT new.state BEGIN
    UPDATE run_counts SET n = n - 1 WHERE state = old.state;
    INSERT INTO run_counts (state, n) VALUES (new.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER runs_after_args AFTER UPDATE OF run ON runs
WHEN json_extract(old.run, '$.args') IS NOT json_extract(new.run, '$.args') BEGIN
    DELETE FROM run_args WHERE run_num = new.run_num;
    INSERT INTO run_args (run_num, name, value)
        SELECT new.run_num, key, value FROM json_each(new.run, '$.args');
END;

CREATE TRIGGER runs_after_labels AFTER UPDATE OF run ON runs
WHEN json_extract(old.run, '$.labels') IS NOT json_extract(new.run, '$.labels') BEGIN
    DELETE FROM run_labels WHERE run_num = new.run_num;
    INSERT INTO run_labels (run_num, label)
        SELECT DISTINCT new.run_num, value FROM json_each(new.run, '$.labels');
END;

CREATE TABLE run_log (
    entry_id INTEGER PRIMARY KEY,
    run_num INTEGER NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    ts TEXT NOT NULL,
    state TEXT,
    message TEXT NOT NULL
);
CREATE INDEX run_log_run ON run_log (run_num, entry_id);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    run_num INTEGER,
    job_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX events_run ON events (run_num, seq) WHERE run_num IS NOT NULL;
CREATE INDEX events_job ON events (job_id, seq) WHERE job_id IS NOT NULL;

CREATE TABLE outputs (
    run_num INTEGER NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    output_id TEXT NOT NULL,
    gen INTEGER NOT NULL,
    length INTEGER NOT NULL,
    original_length INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (run_num, output_id)
) WITHOUT ROWID;

CREATE TABLE output_chunks (
    chunk_rowid INTEGER PRIMARY KEY,
    run_num INTEGER NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    output_id TEXT NOT NULL,
    gen INTEGER NOT NULL,
    chunk_no INTEGER NOT NULL,
    start INTEGER NOT NULL,
    length INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (run_num, output_id, gen, chunk_no)
);
"""

# Version 2 is PostgreSQL's `cluster` table (leader election, pg_schema.py): nothing here,
# but the versions stay numbered alike on both backends.
_V2 = "SELECT 1;"

# Version 3: one trigger keeps run_args and run_labels, in place of one each. An update
# of a run (every transition) parsed its old and new JSON twice each only to find its
# args and labels unchanged, ~2 ms of every 1 000 transitions; one `json_extract` of
# both paths is one parse of each. The side tables are rewritten as before, only when
# the args or the labels change; existing rows are untouched.
_V3 = """
DROP TRIGGER runs_after_args;
DROP TRIGGER runs_after_labels;

CREATE TRIGGER runs_after_args_labels AFTER UPDATE OF run ON runs
WHEN json_extract(old.run, '$.args', '$.labels')
    IS NOT json_extract(new.run, '$.args', '$.labels') BEGIN
    DELETE FROM run_args WHERE run_num = new.run_num;
    INSERT INTO run_args (run_num, name, value)
        SELECT new.run_num, key, value FROM json_each(new.run, '$.args');
    DELETE FROM run_labels WHERE run_num = new.run_num;
    INSERT INTO run_labels (run_num, label)
        SELECT DISTINCT new.run_num, value FROM json_each(new.run, '$.labels');
END;
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)


async def read_version(conn: aiosqlite.Connection) -> int:
    """The schema version of the database; 0 for a new, empty file."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
    )
    if not rows:
        return 0
    rows = list(await conn.execute_fetchall("SELECT version FROM schema_version"))
    return int(rows[0][0]) if rows else 0


async def apply_migrations(conn: aiosqlite.Connection) -> list[int]:
    """Brings the schema up to date, one transaction per migration; returns those applied.

    `conn` must be in autocommit mode (isolation_level=None).
    """
    applied: list[int] = []
    version = await read_version(conn)
    target = len(MIGRATIONS)
    if version > target:
        raise StoreError(
            f"the database has schema version {version}, newer than this Apsis knows "
            f"({target}); upgrade Apsis"
        )
    for number in range(version + 1, target + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if number == 1:
                await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            # executescript would commit first; run the statements one by one instead.
            for statement in _split_statements(MIGRATIONS[number - 1]):
                await conn.execute(statement)
            await conn.execute("UPDATE schema_version SET version = ?", (number,))
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT (a full disk) may have ended it
                await conn.execute("ROLLBACK")
            raise
        applied.append(number)
    return applied


def _split_statements(script: str) -> list[str]:
    """Splits a script into complete statements (triggers contain `;` themselves)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {current.strip()[:60]!r}")
    return statements
