"""Errors the store raises, each saying what to do about it."""

from __future__ import annotations


class StoreError(Exception):
    """A problem with the database: its file, its schema or a request to it."""


class StoreLockedError(StoreError):
    """Another process holds the database; two daemons on one database would run jobs twice."""

    def __init__(self, path: str, pid: int | None, locked: str | None = None) -> None:
        who = f"pid {pid}" if pid else "a process whose pid is not known"
        stop = f"`apsisctl shutdown` or `kill {pid}`" if pid else "`apsisctl shutdown`"
        # `locked`: the file the lock is on, when the path given is another name for it.
        held = f" (locked as {locked})" if locked and locked != path else ""
        super().__init__(
            f"database {path}{held} is in use by another Apsis daemon ({who}); "
            f"stop it first ({stop}), or open the database read-only"
        )
        self.path = path
        self.pid = pid


class InvalidCursorError(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""


class UnknownRunError(StoreError, LookupError):
    """A run id that names no run this store can hold (not `r` and a rowid)."""
