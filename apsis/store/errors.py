"""Errors the store raises, each saying what to do about it."""

from __future__ import annotations

import errno
import sqlite3


class StoreError(Exception):
    """A problem with the database: its file, its schema or a request to it."""


class StoreLockedError(StoreError):
    """Another process holds the database; two daemons on one database would run jobs twice."""

    def __init__(self, path: str, pid: int | None, locked: str | None = None, *,
                 holder: str | None = None) -> None:
        # `holder`: how a PostgreSQL session names the daemon ("apsis HOST pid N").
        who = holder or (f"pid {pid}" if pid else "a process whose pid is not known")
        stop = f"`apsisctl shutdown` or `kill {pid}`" if pid else "`apsisctl shutdown`"
        # `locked`: the file the lock is on, when the path given is another name for it.
        held = f" (locked as {locked})" if locked and locked != path else ""
        super().__init__(
            f"database {path}{held} is in use by another Apsis daemon ({who}); "
            f"stop it first ({stop}), or open the database read-only"
        )
        self.path = path
        self.pid = pid


class DiskFullError(StoreError):
    """The disk the database is on is full: the write was rolled back, nothing of it happened."""

    def __init__(self, path: str) -> None:
        super().__init__(f"disk full: cannot write the database {path}; "
                         "free space on its file system, then retry")
        self.path = path


def is_disk_full(exc: BaseException) -> bool:
    """Whether SQLite or the OS refused a write for want of space (by code, not text)."""
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class InvalidCursorError(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""


class UnknownRunError(StoreError, LookupError):
    """A run id that names no run this store can hold (not `r` and a rowid)."""
