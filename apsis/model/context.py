"""What a job definition is parsed against: the jobs directory's shared config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from ..errors import Diagnostics

if TYPE_CHECKING:
    from ..calendar.base import Calendar


@dataclass
class ParseContext:
    """Passed to every `from_jso`: where to report problems and how to resolve names.

    `get_calendar(name)` returns a calendar or raises `ValueError` whose message
    names the problem and a hint.  `host_groups` are the names of host groups.
    """

    diags: Diagnostics = field(default_factory=Diagnostics)
    get_calendar: Callable[[str], Calendar] | None = None
    host_groups: dict[str, Any] = field(default_factory=dict)

    def calendar(self, name: Any) -> Calendar:
        if self.get_calendar is None:
            from ..calendar import get_calendar  # the built-ins, without named calendars

            return get_calendar(str(name))
        return self.get_calendar(str(name))
