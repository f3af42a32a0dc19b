"""Errors the store raises, each saying what to do about it."""

from __future__ import annotations


class StoreError(Exception):
    """A problem with the database: its file, its schema or a request to it."""


class StoreLockedError(StoreError):
    """Another process holds the database; two daemons on one database would run jobs twice."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "a process whose pid is not recorded"
        stop = f"`apsisctl shutdown` or `kill {pid}`" if pid else "`apsisctl shutdown`"
        super().__init__(
            f"database {path} is in use by another Apsis daemon ({who}); "
            f"stop it first ({stop}), or open the database read-only"
        )
        self.path = path
        self.pid = pid


class InvalidCursorError(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""
