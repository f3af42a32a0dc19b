"""Run states and the one table of transitions between them."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    NEW = "new"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @classmethod
    def parse(cls, text: str) -> State:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown state {text!r}; states are: {names}") from None


FINISHED = frozenset({State.SUCCESS, State.FAILURE, State.ERROR, State.SKIPPED})
UNFINISHED = frozenset(set(State) - FINISHED)

TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.SCHEDULED, State.SKIPPED, State.ERROR}),
    State.SCHEDULED: frozenset({State.WAITING, State.STARTING, State.SKIPPED, State.ERROR}),
    State.WAITING: frozenset({State.STARTING, State.SKIPPED, State.ERROR}),
    State.STARTING: frozenset({State.RUNNING, State.ERROR}),
    State.RUNNING: frozenset({State.STOPPING, State.SUCCESS, State.FAILURE, State.ERROR}),
    State.STOPPING: frozenset({State.SUCCESS, State.FAILURE, State.ERROR}),
    # `mark` moves a finished run to another finished state.
    State.SUCCESS: FINISHED - {State.SUCCESS},
    State.FAILURE: FINISHED - {State.FAILURE},
    State.ERROR: FINISHED - {State.ERROR},
    State.SKIPPED: FINISHED - {State.SKIPPED},
}


def can_transition(from_: State, to: State) -> bool:
    return to in TRANSITIONS[from_]


class TransitionError(ValueError):
    """An operation the run's state does not allow (the API answers 409)."""
