"""What a job definition is parsed against: the jobs directory's shared config.

It lives outside `model/` because it depends on calendars (to resolve names),
and calendars must not depend on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .calendar.base import Calendar
from .calendar.lookup import get_calendar as builtin_calendar
from .errors import Diagnostics


@dataclass
class ParseContext:
    """Passed to every `from_jso`: where to report problems and how to resolve names.

    `get_calendar(name)` returns a calendar or raises `ValueError` whose message
    names the problem and a hint; without it, only the built-in calendars resolve.
    `host_groups` are the names of host groups.
    """

    diags: Diagnostics = field(default_factory=Diagnostics)
    get_calendar: Callable[[str], Calendar] | None = None
    host_groups: dict[str, Any] = field(default_factory=dict)
    # Parts of jobs parsed with this context, by (section, repr of the value): what
    # parses the same in this config is parsed once (jobs_dir._parsed).
    parsed: dict[tuple[str, str], Any] = field(default_factory=dict)

    def calendar(self, name: Any) -> Calendar:
        if self.get_calendar is None:
            return builtin_calendar(str(name))
        return self.get_calendar(str(name))
