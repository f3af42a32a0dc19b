"""The PostgreSQL schema: the SQLite schema's tables and semantics, in PostgreSQL's terms.

Migration N (1-based) takes a database from version N-1 to N, like `schema.MIGRATIONS`;
the two lists are numbered alike, so `SCHEMA_VERSION` names the same tables on both.
Differences from SQLite, each for a reason:
- Text that is compared for order (`sort_time`, `ts`) is `COLLATE "C"`: byte order is
  time order for the fixed-width UTC keys, whatever the database's locale.
- `meta` holds text; `next_run_num` and `last_seq` are numbers in text, cast where used.
- `last_seq` in `meta` replaces SQLite's `sqlite_sequence`: a write takes its seqs by
  updating that row, so the row lock orders writers and seqs are strictly increasing
  and gapless in commit order (a SEQUENCE can commit 6 before 5, and a standby that
  read 6 would never see 5).
- Triggers are plpgsql functions; the args, labels and counters they keep are the same.
- Output chunks are `bytea` with `STORAGE EXTERNAL`: already zlib-compressed, so
  PostgreSQL should not try to compress them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apsis.store.errors import StoreError
from apsis.store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

# Any constant works; this one is "apsis" in ASCII. The migration lock is a transaction
# lock on it; the daemon's lock is a session lock on the next one.
MIGRATE_LOCK = 0x6170736973
DAEMON_LOCK = MIGRATE_LOCK + 1

_V1 = r"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
INSERT INTO meta (key, value) VALUES ('next_run_num', '1'), ('last_seq', '0');

CREATE TABLE jobdefs (
    jobdef_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    job TEXT NOT NULL
);

CREATE TABLE runs (
    run_num BIGINT PRIMARY KEY,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    sort_time TEXT COLLATE "C" NOT NULL,
    jobdef_id BIGINT REFERENCES jobdefs (jobdef_id),
    run TEXT NOT NULL
);
CREATE INDEX runs_time ON runs (sort_time, run_num, state);
CREATE INDEX runs_job_time ON runs (job_id, sort_time, run_num, state);
CREATE INDEX runs_state_time ON runs (state, sort_time);
CREATE INDEX runs_jobdef ON runs (jobdef_id);

CREATE TABLE run_args (
    run_num BIGINT NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (run_num, name)
);
CREATE INDEX run_args_value ON run_args (name, value);

CREATE TABLE run_labels (
    run_num BIGINT NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (run_num, label)
);
CREATE INDEX run_labels_label ON run_labels (label);

CREATE TABLE run_counts (
    state TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);

CREATE FUNCTION apsis_run_args(args json) RETURNS TABLE (name TEXT, value TEXT)
LANGUAGE sql IMMUTABLE AS $$
    SELECT key, value FROM json_each_text(CASE WHEN json_typeof(args) = 'object' THEN args END)
$$;

CREATE FUNCTION apsis_run_labels(labels json) RETURNS TABLE (label TEXT)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT value FROM json_array_elements_text(
        CASE WHEN json_typeof(labels) = 'array' THEN labels END)
$$;

CREATE FUNCTION apsis_runs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_run json;
    new_run json;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND (TG_OP = 'DELETE' OR OLD.state IS DISTINCT FROM NEW.state) THEN
        UPDATE run_counts SET n = n - 1 WHERE state = OLD.state;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state THEN
        INSERT INTO run_counts (state, n) VALUES (NEW.state, 1)
            ON CONFLICT (state) DO UPDATE SET n = run_counts.n + 1;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.run = NEW.run THEN
        RETURN NULL;
    END IF;
    -- json, not jsonb: only checked, not converted, and `->` gives the text as written;
    -- the store always writes runs with the same serializer, so equal text is equal value.
    new_run := NEW.run::json;
    IF TG_OP = 'UPDATE' THEN
        old_run := OLD.run::json;
    END IF;
    IF TG_OP = 'INSERT' OR (old_run -> 'args')::text IS DISTINCT FROM (new_run -> 'args')::text THEN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM run_args WHERE run_num = NEW.run_num;
        END IF;
        INSERT INTO run_args (run_num, name, value)
            SELECT NEW.run_num, a.name, a.value FROM apsis_run_args(new_run -> 'args') a;
    END IF;
    IF TG_OP = 'INSERT' OR (old_run -> 'labels')::text IS DISTINCT FROM (new_run -> 'labels')::text THEN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM run_labels WHERE run_num = NEW.run_num;
        END IF;
        INSERT INTO run_labels (run_num, label)
            SELECT NEW.run_num, l.label FROM apsis_run_labels(new_run -> 'labels') l;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_changed AFTER INSERT OR UPDATE OR DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION apsis_runs_changed();

CREATE TABLE run_log (
    entry_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_num BIGINT NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    ts TEXT NOT NULL,
    state TEXT,
    message TEXT NOT NULL
);
CREATE INDEX run_log_run ON run_log (run_num, entry_id);

CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    ts TEXT COLLATE "C" NOT NULL,
    type TEXT NOT NULL,
    run_num BIGINT,
    job_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX events_run ON events (run_num, seq) WHERE run_num IS NOT NULL;
CREATE INDEX events_job ON events (job_id, seq) WHERE job_id IS NOT NULL;
CREATE INDEX events_ts ON events (ts);

CREATE TABLE outputs (
    run_num BIGINT NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    output_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    length BIGINT NOT NULL,
    original_length BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (run_num, output_id)
);

CREATE TABLE output_chunks (
    run_num BIGINT NOT NULL REFERENCES runs (run_num) ON DELETE CASCADE,
    output_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    chunk_no BIGINT NOT NULL,
    start BIGINT NOT NULL,
    length BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (run_num, output_id, gen, chunk_no)
);
ALTER TABLE output_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

# Leader election (SPEC §1.14): one row. `epoch` goes up at every change of leader and
# fences the writes of a leader that lost its lock; `heartbeat` is the leader's last
# sign of life (for `apsisctl status` and people).
_V2 = r"""
CREATE TABLE cluster (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    leader TEXT,
    advertise TEXT,
    heartbeat TIMESTAMPTZ
);
INSERT INTO cluster (id, epoch) VALUES (1, 0);
"""

# Version 3 is SQLite's single args-and-labels trigger (schema.py): PostgreSQL's trigger
# already reads each run's JSON once, so nothing changes here.
_V3 = "SELECT 1;"

MIGRATIONS: list[str] = [_V1, _V2, _V3]
assert len(MIGRATIONS) == SCHEMA_VERSION, "a SQLite migration needs its PostgreSQL twin"


async def read_version(conn: asyncpg.Connection) -> int:
    """The schema version of the database; 0 for an empty one."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    version = await conn.fetchval("SELECT version FROM schema_version")
    return int(version or 0)


async def apply_migrations(conn: asyncpg.Connection) -> list[int]:
    """Brings the schema up to date, one transaction per migration; returns those applied.

    A transaction-level advisory lock makes two processes migrating at once take turns.
    """
    applied: list[int] = []
    target = len(MIGRATIONS)
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            version = await read_version(conn)
            if version > target:
                raise StoreError(
                    f"the database has schema version {version}, newer than this Apsis "
                    f"knows ({target}); upgrade Apsis"
                )
            if version == target:
                return applied
            number = version + 1
            if number == 1:
                await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            # A script of several statements runs as one simple query (no parameters).
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("UPDATE schema_version SET version = $1", number)
        applied.append(number)
