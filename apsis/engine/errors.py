"""What the engine refuses, as types: the API picks the HTTP status (api/errors.py).

Each carries a short machine `code` for clients (`unknown_run`, `bad_args`...) and a
message for people; none knows about HTTP.
"""

from __future__ import annotations


class EngineError(Exception):
    """A request the engine refuses."""

    code = "invalid"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(EngineError, LookupError):
    """No such run, job or output."""

    code = "not_found"


class Invalid(EngineError):
    """The request itself is wrong: unknown args, a bad signal name, an invalid job."""


class Conflict(EngineError):
    """The request is fine, but not in the run's current state."""

    code = "bad_state"


class Unavailable(EngineError):
    """The daemon cannot do it now (shutting down); the same request may work later."""

    code = "unavailable"


class NotRecorded(EngineError):
    """The database refused this change: nothing of it happened (the rest of the batch did)."""

    code = "not_recorded"


class DiskFull(NotRecorded):
    """Not recorded for want of disk space: the same request works once space is freed."""

    code = "disk_full"
