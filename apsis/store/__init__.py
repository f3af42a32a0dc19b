"""The store: what the engine decided, persisted; what the API reads.

Two backends behind one contract (`RunStore`, apsis/store/base.py): SQLite (`Store`,
the embedded default) and PostgreSQL (`PgStore`). `open_store` picks by the name.

store = await open_store("apsis.db")     # or "postgresql://apsis@db1/apsis"
[run_id] = await store.allocate_run_ids(1)
seqs = await store.write([run], [log_entry], [event])
page = await store.query_runs(job_id="data/load prices", limit=100)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from apsis.store.archive import default_archive_path
from apsis.store.errors import InvalidCursorError, StoreError, StoreLockedError
from apsis.store.outputs import CHUNK_SIZE, cut_marker
from apsis.store.schema import MIGRATIONS, SCHEMA_VERSION
from apsis.store.common import DEFAULT_CONTENT_TYPE, RunPage
from apsis.store.store import Store

if TYPE_CHECKING:
    from apsis.store.base import RunStore

URL_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(database: str | os.PathLike[str]) -> bool:
    """A PostgreSQL URL, as opposed to the path of a SQLite file."""
    return isinstance(database, str) and database.startswith(URL_SCHEMES)


async def open_store(database: str | os.PathLike[str], *, create: bool = True,
                     readonly: bool = False, elect: bool = False,
                     takeover: float = 10.0) -> RunStore:
    """The store at `database`: PostgreSQL for a `postgresql://` URL (the password from
    the URL, PGPASSWORD or ~/.pgpass), else the SQLite file at that path.

    Unless readonly it is locked against a second daemon and migrated as it opens.
    With `elect`, a PostgreSQL store is not locked yet: daemons elect their leader
    (apsis/engine/leadership.py), and a lost one's lock comes free within about
    `takeover` seconds; a SQLite one is locked as always.
    """
    if is_database_url(database):
        from apsis.store.postgres import PgStore  # asyncpg only when PostgreSQL is used

        return await PgStore.open(str(database), create=create, readonly=readonly,
                                  elect=elect, takeover=takeover)
    return await Store.open(database, create=create, readonly=readonly)

__all__ = [
    "is_database_url",
    "open_store",
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
