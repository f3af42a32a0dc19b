"""The database an `apsisctl` command names: --db or --config, opened directly.

Shared by `apsisctl db …` and `apsisctl status`: which database (a SQLite file or a
PostgreSQL URL), how messages show it, and running one coroutine on its opened store
with the lock turned into a user error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .common import UserError
from .exitcodes import ExitStatus

Database = Path | str  # a SQLite file, or a PostgreSQL URL


def is_url(database: Database) -> bool:
    return isinstance(database, str)


def shown(database: Database) -> str:
    """The database as messages name it: a URL without its password."""
    if isinstance(database, str):
        from apsis.store.postgres import display_url

        return display_url(database)
    return str(database)


def parse_database(value: str) -> Database:
    return value if value.startswith(("postgresql://", "postgres://")) else Path(value)


def need(database: Database) -> None:
    if not is_url(database) and not Path(database).exists():
        raise UserError(f"no database at {database}", "give --db PATH or --config F")


def database_and_archive(db: str | None, config_path: str | None) -> tuple[Database, Path | None]:
    """(database, archive) from --db and --config, else the embedded default ./apsis.db."""
    archive = None
    database: Database = Path("apsis.db")
    if config_path:
        from apsis.config import load_config
        from apsis.errors import JobError

        try:
            config = load_config(Path(config_path))
        except JobError as exc:
            raise UserError(f"bad config: {exc}") from None
        database, archive = config.store_target, config.archive
        if archive is None and config.database_url:
            # What the daemon does: beside the config, where a SQLite file would be.
            from apsis.store import default_archive_path

            archive = default_archive_path(config.database)
    if db:
        database = parse_database(db)
    return database, archive


def store_errors() -> tuple[type[BaseException], type[BaseException]]:
    from apsis.store import StoreError, StoreLockedError

    return StoreLockedError, StoreError


def with_store(path: Database, body: Any, *, locked_ok: bool = False, **open_kw: Any) -> Any:
    """`body(store)` on the database; a daemon's lock is a user error unless `locked_ok`,
    which lets the StoreLockedError through for the caller to go through the daemon."""
    from apsis.store import open_store

    locked, error = store_errors()

    async def main() -> Any:
        store = await open_store(path, **open_kw)
        try:
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except locked as exc:
        if locked_ok:
            raise
        raise UserError(str(exc), "stop the daemon first: apsisctl shutdown",
                        ExitStatus.FAILURE) from None
    except error as exc:
        raise UserError(str(exc), None, ExitStatus.FAILURE) from None
