"""Strict parsing of YAML mappings: every key is taken, leftovers are errors."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar
from collections.abc import Callable

from ..errors import Diagnostics, JobError, Location
from ..yamlload import YMap, YSeq, loc_of, node_loc

T = TypeVar("T")
_MISSING = object()


def did_you_mean(word: str, choices: list[str] | set[str] | tuple[str, ...]) -> str:
    """A ` (did you mean 'x'?)` suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Fields:
    """Takes the keys of one YAML mapping, converting each and locating its errors.

    `done()` reports every key nobody took as an unknown key, with a hint.
    """

    def __init__(self, node: Any, what: str, diags: Diagnostics, loc: Location | None = None) -> None:
        if not isinstance(node, dict):
            raise JobError(f"{what} must be a mapping, not {type_name(node)}", node_loc(node, loc))
        self.node = node
        self.what = what
        self.diags = diags
        self.loc: Location | None = node_loc(node, loc)
        self._taken: set[str] = set()
        self._known: set[str] = set()

    def loc_of(self, key: str) -> Location | None:
        return loc_of(self.node, key, self.loc)

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self.node

    def get(self, key: str, default: Any = None, conv: Callable[[Any], T] | None = None) -> Any:
        """The value of an optional key, converted; conversion errors are located."""
        self._known.add(key)
        if key not in self.node:
            return default
        self._taken.add(key)
        value = self.node[key]
        return self.convert(key, value, conv) if conv else value

    def require(self, key: str, conv: Callable[[Any], T] | None = None) -> Any:
        self._known.add(key)
        if key not in self.node:
            raise JobError(f"{self.what} needs '{key}'", self.loc)
        return self.get(key, conv=conv)

    def convert(self, key: str, value: Any, conv: Callable[[Any], T]) -> T:
        try:
            return conv(value)
        except JobError:
            raise
        except (ValueError, TypeError, LookupError) as exc:
            raise JobError(f"{key}: {message_of(exc)}", self.loc_of(key)) from None

    def ignore(self, *keys: str) -> None:
        """Marks keys as known and taken without reading them."""
        self._known.update(keys)
        self._taken.update(k for k in keys if k in self.node)

    def done(self, *, typos_only: bool = False) -> None:
        """Reports the keys nobody took.  `typos_only` (after a bad value stopped the
        parse, when later keys were never read) reports only those close to a known
        key: a misspelt key often explains a missing one."""
        for key in self.node:
            if key not in self._taken and key not in self._known:
                hint = did_you_mean(str(key), self._known)
                if typos_only and not hint:
                    continue
                loc = self.node.key_loc(key) if isinstance(self.node, YMap) else self.loc
                self.diags.error(f"unknown key {key!r} in {self.what}{hint}", loc)


def parse_all(diags: Diagnostics, **parsers: Callable[[], Any]) -> dict[str, Any]:
    """Each independent part of a mapping, by name.  Every part is tried, so that a bad
    time zone does not hide a bad calendar: the first failure is raised, the others
    are reported to `diags`."""
    values: dict[str, Any] = {}
    first: JobError | None = None
    for name, parse in parsers.items():
        try:
            values[name] = parse()
        except JobError as exc:
            if first is None:
                first = exc
            else:
                diags.add(exc)
    if first is not None:
        raise first
    return values


def message_of(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def one_or_list(value: Any) -> list[Any]:
    """Job files allow one item or a list of them in many places."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def items_with_locs(value: Any, default: Location | None) -> list[tuple[Any, Location | None]]:
    """Items of a one-or-list value, each with its location."""
    if isinstance(value, YSeq):
        return [(v, value.loc_of(i)) for i, v in enumerate(value)]
    if isinstance(value, list):
        return [(v, default) for v in value]
    if value is None:
        return []
    return [(value, node_loc(value, default))]


def as_str(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return str(value)


def as_str_list(value: Any) -> list[str]:
    return [as_str(v) for v in one_or_list(value)]


def as_args(value: Any) -> dict[str, str]:
    """An args mapping: names to strings (numbers are written as strings)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"args must be a mapping of names to values, not {type_name(value)}")
    return {str(k): as_str(v) for k, v in value.items()}


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
