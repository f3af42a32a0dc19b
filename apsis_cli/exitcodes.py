"""Exit codes, in one place (SPEC §1.4)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    USAGE = 2
    ERROR = 3
    SKIPPED = 4
    UNAVAILABLE = 69
    TIMEOUT = 124
    INTERRUPTED = 130


STATE_EXIT = {
    "success": ExitStatus.SUCCESS,
    "failure": ExitStatus.FAILURE,
    "error": ExitStatus.ERROR,
    "skipped": ExitStatus.SKIPPED,
}
