"""Holiday lists from the `holidays` package, built one year at a time and cached.

Building a year of holidays costs about a millisecond and a schedule or a
`check-job` over thousands of jobs asks about the same few years again and
again, so each (country or market, subdivision) is one shared object per
process whose years are built on first use.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any, Literal

from ..lib.strict import did_you_mean

Kind = Literal["holidays", "market"]


class HolidayList:
    """The holidays of one country (or subdivision) or financial market, by year."""

    __slots__ = ("_factory", "_lock", "_years", "code", "kind", "subdiv")

    def __init__(self, kind: Kind, code: str, subdiv: str | None,
                 factory: Callable[[int], Any]) -> None:
        self.kind = kind
        self.code = code
        self.subdiv = subdiv
        self._factory = factory
        self._years: dict[int, frozenset[dt.date]] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.code}" + (f":{self.subdiv}" if self.subdiv else "")

    def __repr__(self) -> str:
        return f"<holidays {self.name}>"

    def dates(self, year: int) -> frozenset[dt.date]:
        dates = self._years.get(year)
        if dates is None:
            with self._lock:  # the daemon's threads may ask for the same new year at once
                dates = self._years.get(year)
                if dates is None:
                    dates = self._years[year] = frozenset(self._factory(year).keys())
        return dates

    def is_holiday(self, date: dt.date) -> bool:
        return date in self.dates(date.year)


@functools.cache
def _countries() -> dict[str, list[str]]:
    import holidays

    return {code.upper(): list(subdivs) for code, subdivs in holidays.list_supported_countries().items()}


@functools.cache
def _markets() -> dict[str, list[str]]:
    import holidays

    return {code.upper(): list(subdivs) for code, subdivs in holidays.list_supported_financial().items()}


def market_codes() -> list[str]:
    """Every market the `holidays` package knows, by MIC or common name (NYSE, XNYS, LSE...)."""
    return sorted(_markets())


def _subdivision(spec: str, owner: str, subdiv: str, known: list[str]) -> str:
    by_upper = {s.upper(): s for s in known}
    if subdiv.upper() in by_upper:
        return by_upper[subdiv.upper()]
    if not known:
        raise ValueError(f"{spec!r}: {owner} has no subdivisions in the holidays package")
    hint = did_you_mean(subdiv.upper(), list(by_upper))
    raise ValueError(f"{spec!r}: unknown subdivision {subdiv!r} of {owner}{hint}; "
                     f"{owner} has {', '.join(known)}")


@functools.cache
def _holiday_list(kind: Kind, code: str, subdiv: str | None) -> HolidayList:
    import holidays

    if kind == "holidays":
        def build(year: int) -> Any:
            return holidays.country_holidays(code, subdiv=subdiv, years=year)
    else:
        def build(year: int) -> Any:
            return holidays.financial_holidays(code, subdiv=subdiv, years=year)
    return HolidayList(kind, code, subdiv, build)


def holiday_list(spec: str) -> HolidayList:
    """The shared holiday list for `holidays:CC[:SUBDIV]` or `market:MIC[:SUBDIV]`.

    Raises `ValueError` naming the unknown code, with a hint and the valid choices.
    """
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    code, _, subdiv = rest.strip().partition(":")
    code = code.strip().upper()
    if kind == "holidays":
        table, what = _countries(), "country"
    elif kind == "market":
        table, what = _markets(), "market"
    else:
        raise ValueError(f"{spec!r}: a holiday source is holidays:<COUNTRY>[:<SUBDIVISION>] "
                         f"or market:<MIC or name>")
    if not code:
        example = "holidays:US" if kind == "holidays" else "market:NYSE"
        raise ValueError(f"{spec!r}: missing the {what} code (write e.g. {example})")
    if code not in table:
        hint = did_you_mean(code, list(table))
        if kind == "market":
            raise ValueError(f"unknown market {code!r} in {spec!r}{hint}; "
                             f"known markets: {', '.join(sorted(table))}")
        raise ValueError(f"unknown country {code!r} in {spec!r}{hint} "
                         f"(use an ISO 3166 code known to the holidays package, e.g. US, GB, DE)")
    canonical_subdiv = _subdivision(spec, code, subdiv.strip(), table[code]) if subdiv.strip() else None
    return _holiday_list(kind, code, canonical_subdiv)  # type: ignore[arg-type]
