"""How runs look to people, the same in the CLI and the TUI.

State names (from `apsis.model.states`), a symbol per state with its ASCII fallback,
a colour tone per state, and elapsed times: one table and one formatter, so `apsis
runs`, `apsis show`, `apsis wait` and every TUI screen agree. Symbols carry the state
without colour (NO_COLOR, 16-colour terminals); colour only adds to them.

Imports only the standard library and `apsis.model.states`: the CLI's fast paths and
the TUI's headless model both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from apsis.model.states import FINISHED, State

STATES: tuple[str, ...] = tuple(state.value for state in State)
FINISHED_STATES: frozenset[str] = frozenset(state.value for state in FINISHED)
ACTIVE_STATES: frozenset[str] = frozenset({State.STARTING.value, State.RUNNING.value,
                                           State.STOPPING.value})
PENDING_STATES: frozenset[str] = frozenset({State.NEW.value, State.SCHEDULED.value,
                                            State.WAITING.value})
FAILED_STATES: frozenset[str] = frozenset({State.FAILURE.value, State.ERROR.value})
# Names for several states at once, in `apsis runs -s` and the TUI's `state:` alike.
STATE_GROUPS: dict[str, frozenset[str]] = {
    "finished": FINISHED_STATES,
    "active": ACTIVE_STATES,
    "pending": PENDING_STATES,
    "failed": FAILED_STATES,
}


def states_named(word: str) -> frozenset[str]:
    """The states one word names: a state, a group, or a prefix of states (`fail`);
    empty if it names none."""
    word = word.strip().lower()
    if word in STATE_GROUPS:
        return STATE_GROUPS[word]
    if word in STATES:
        return frozenset({word})
    return frozenset(s for s in STATES if word and s.startswith(word))

Tone = Literal["disabled", "muted", "warning", "primary", "success", "error"]

# A tone as a 16-colour ANSI name (for Rich and click); "disabled" is dim, not a colour.
TONE_COLORS: dict[Tone, str | None] = {
    "disabled": None,
    "muted": "bright_black",
    "warning": "yellow",
    "primary": "blue",
    "success": "green",
    "error": "red",
}


@dataclass(frozen=True, slots=True)
class StateLook:
    """How one state is drawn: a one-cell symbol (never an emoji), its ASCII fallback,
    a colour tone, and emphasis."""

    symbol: str
    ascii: str
    tone: Tone
    bold: bool = False
    reverse: bool = False

    @property
    def color(self) -> str | None:
        """The tone's ANSI colour name, or None (drawn dim)."""
        return TONE_COLORS[self.tone]

    @property
    def dim(self) -> bool:
        return self.tone == "disabled"

    @property
    def style(self) -> str:
        """A Rich style string: `bold red`, `dim`, ..."""
        words = [w for w, on in (("bold", self.bold), ("reverse", self.reverse),
                                 ("dim", self.dim)) if on]
        return " ".join(words + ([self.color] if self.color else []))


STATE_LOOKS: dict[str, StateLook] = {
    State.NEW.value: StateLook("·", ".", "disabled"),
    State.SCHEDULED.value: StateLook("○", "o", "muted"),
    State.WAITING.value: StateLook("◊", "~", "warning"),
    State.STARTING.value: StateLook("▷", ">", "primary"),
    State.RUNNING.value: StateLook("▶", ">", "primary", bold=True),
    State.STOPPING.value: StateLook("■", "=", "warning", bold=True),
    State.SUCCESS.value: StateLook("✓", "+", "success"),
    State.FAILURE.value: StateLook("✗", "x", "error", bold=True),
    State.ERROR.value: StateLook("!", "!", "error", bold=True, reverse=True),
    State.SKIPPED.value: StateLook("–", "-", "muted"),
}
UNKNOWN_LOOK = StateLook("?", "?", "muted")


def state_look(state: str) -> StateLook:
    return STATE_LOOKS.get(state, UNKNOWN_LOOK)


def state_symbol(state: str, ascii: bool = False) -> str:
    look = state_look(state)
    return look.ascii if ascii else look.symbol


def state_label(state: str, ascii: bool = False) -> str:
    """`✓ success`: the symbol and the name."""
    return f"{state_symbol(state, ascii)} {state}"


def format_elapsed(seconds: float | None, *, narrow: bool = False) -> str:
    """`1:02:03` (H:MM:SS); beyond a day `1d 2:03:04`, or `1d02h` when `narrow` (for a
    column of 8 cells); empty for None."""
    if seconds is None:
        return ""
    total = int(seconds)
    sign = "-" if total < 0 else ""
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    if days and narrow:
        return f"{sign}{days}d{hours:02d}h"
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{sign}{days}d {text}" if days else sign + text


def parse_time(value: object) -> float | None:
    """An ISO 8601 time from the API as epoch seconds (naive taken as UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def started_at(times: Mapping[str, Any]) -> float | None:
    """When the run's program started: `running`, else `starting`."""
    when = parse_time(times.get(State.RUNNING.value))
    return when if when is not None else parse_time(times.get(State.STARTING.value))


def finished_at(times: Mapping[str, Any]) -> float | None:
    """When the run ended: its first finished state's time (a later `mark` adds another)."""
    ends = [t for t in (parse_time(times.get(s)) for s in FINISHED_STATES) if t is not None]
    return min(ends, default=None)


def run_elapsed(run: Mapping[str, Any], now: float) -> float | None:
    """Seconds from start to end, or to `now` while unfinished (never negative, whatever
    the clocks say); None if it never started, or finished without an end time."""
    times = run.get("times") or {}
    start = started_at(times)
    if start is None:
        return None
    if run.get("state") in FINISHED_STATES:
        end = finished_at(times)
        if end is None:
            return None
    else:
        end = now
    return max(0.0, end - start)


def job_labels(job: Mapping[str, Any]) -> list[str]:
    """A job's labels as a list of strings (`metadata.labels` may be one string)."""
    labels = (job.get("metadata") or {}).get("labels") or job.get("labels") or []
    return [labels] if isinstance(labels, str) else [str(label) for label in labels]
