"""Pluggable families (programs, schedules, conditions, actions) keyed by `type`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import JobError, Location
from .strict import Fields, did_you_mean, items_with_locs

if TYPE_CHECKING:
    from ..parse_context import ParseContext

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps short type names to classes; a dotted name loads an extension class."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._types: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            self._types[name] = cls
            cls.TYPE = name  # type: ignore[attr-defined]
            return cls
        return deco

    @property
    def names(self) -> list[str]:
        return sorted(self._types)

    def get(self, name: Any) -> type[T]:
        if not isinstance(name, str):
            raise ValueError(f"{self.family} type must be a string, not {name!r}")
        if name in self._types:
            return self._types[name]
        if "." in name:
            module_name, _, attr = name.rpartition(".")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot load {self.family} class {name!r}: {exc}") from None
        hint = did_you_mean(name, list(self._types))
        known = ", ".join(self.names)
        raise ValueError(f"unknown {self.family} type {name!r}{hint}; known types: {known}")

    def parse(self, value: Any, loc: Location | None, ctx: ParseContext) -> T:
        """One item from a mapping with `type`: the class takes its keys, leftovers are errors."""
        f = Fields(value, self.family, ctx.diags, loc)
        try:
            cls = self.get(f.require("type"))
        except ValueError as exc:
            raise JobError(str(exc), f.loc_of("type")) from None
        try:
            item = cls.from_jso(f, ctx)  # type: ignore[attr-defined]
        except JobError:
            f.done(typos_only=True)
            raise
        f.done()
        return item

    def parse_list(self, value: Any, loc: Location | None, ctx: ParseContext) -> list[T]:
        """One item or a list; each broken one is reported and the rest still parsed."""
        items = []
        for item, item_loc in items_with_locs(value, loc):
            with ctx.diags.collect():
                items.append(self.parse(item, item_loc, ctx))
        return items
