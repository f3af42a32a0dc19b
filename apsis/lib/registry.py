"""Pluggable families (programs, schedules, conditions, actions) keyed by `type`."""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar
from collections.abc import Callable

from .strict import did_you_mean

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
        hint = did_you_mean(name, self._types)
        known = ", ".join(self.names)
        raise ValueError(f"unknown {self.family} type {name!r}{hint}; known types: {known}")
