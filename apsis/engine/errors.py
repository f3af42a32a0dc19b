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


class NotLeader(Unavailable):
    """This daemon is a standby: writes go to the leader, at `leader` (its advertise URL)
    if it gave one; `leader_node` names it, if any daemon leads."""

    code = "not_leader"

    def __init__(self, leader: str | None, leader_node: str | None) -> None:
        if leader_node is None:
            message = "this daemon is a standby and no leader is known yet; retry shortly"
        else:
            where = f" at {leader}" if leader else " (it gave no ha.advertise URL)"
            message = f"this daemon is a standby: send writes to the leader, {leader_node}{where}"
        super().__init__(message)
        self.leader = leader
        self.leader_node = leader_node


class NotRecorded(EngineError):
    """The database refused this change: nothing of it happened (the rest of the batch did)."""

    code = "not_recorded"


class DiskFull(NotRecorded):
    """Not recorded for want of disk space: the same request works once space is freed."""

    code = "disk_full"
