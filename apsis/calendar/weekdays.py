"""Weekday sets as users write them: `Mon-Fri`, `Mon,Wed,Fri`, `Sat-Sun`, `Fri-Mon`."""

from __future__ import annotations

import re

from ..lib.strict import did_you_mean

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SHORT_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MON_FRI = frozenset(range(5))
ALL_DAYS = frozenset(range(7))

# Any prefix of three letters or more of a full name: Tue, Tues, Thur, Thurs, Wednes...
_SPELLINGS = {
    name[:n]: i for i, name in enumerate(DAY_NAMES) for n in range(3, len(name) + 1)
}
_LOOKS_LIKE_WEEKDAYS = re.compile(r"^[A-Za-z\s,-]+$")


def parse_weekday(word: str) -> int:
    """0 for Monday … 6 for Sunday; full names and three-letter-or-longer prefixes, any case."""
    key = word.strip().lower()
    try:
        return _SPELLINGS[key]
    except KeyError:
        hint = did_you_mean(key.capitalize(), [n.capitalize() for n in DAY_NAMES] + list(SHORT_NAMES))
        raise ValueError(f"not a weekday: {word.strip()!r}{hint}") from None


def parse_weekdays(text: str) -> frozenset[int]:
    """The weekdays of a spec like `Mon-Fri` or `Mon,Wed,Fri`; ranges may wrap (`Fri-Mon`)."""
    days: set[int] = set()
    if not text.strip():
        raise ValueError("empty weekday set (write e.g. Mon-Fri or Mon,Wed,Fri)")
    for part in text.split(","):
        if "-" in part:
            ends = part.split("-")
            if len(ends) != 2 or not all(e.strip() for e in ends):
                raise ValueError(f"bad weekday range {part.strip()!r} (write e.g. Mon-Fri)")
            start, stop = parse_weekday(ends[0]), parse_weekday(ends[1])
            span = (stop - start) % 7
            days.update((start + i) % 7 for i in range(span + 1))
        else:
            days.add(parse_weekday(part))
    return frozenset(days)


def looks_like_weekdays(text: str) -> bool:
    """Whether a name is shaped like a weekday set, so that its error should be about weekdays."""
    if not _LOOKS_LIKE_WEEKDAYS.match(text.strip()):
        return False
    words = [w for w in re.split(r"\s*[-,]\s*", text.strip().lower()) if w]
    return bool(words) and all(w in _SPELLINGS or did_you_mean(w, DAY_NAMES + tuple(_SPELLINGS)) for w in words)
