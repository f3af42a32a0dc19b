"""The SQLite store: what the engine decided, persisted; what the API reads.

store = await Store.open("apsis.db")
[run_id] = await store.allocate_run_ids(1)
seqs = await store.write([run], [log_entry], [event])
page = await store.query_runs(job_id="data/load prices", limit=100)
"""

from apsis.store.archive import default_archive_path
from apsis.store.errors import InvalidCursorError, StoreError, StoreLockedError
from apsis.store.outputs import CHUNK_SIZE, cut_marker
from apsis.store.schema import MIGRATIONS, SCHEMA_VERSION
from apsis.store.store import DEFAULT_CONTENT_TYPE, RunPage, Store

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "InvalidCursorError",
    "RunPage",
    "Store",
    "StoreError",
    "StoreLockedError",
    "cut_marker",
    "default_archive_path",
]
