"""Errors that point at the place in a job file they are about."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal
from collections.abc import Iterator

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file; line and column are 1-based, as editors show them."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}"
        return self.path


class JobError(Exception):
    """A problem with a job definition, carrying where it is."""

    def __init__(self, message: str, loc: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}" if self.loc else self.message


@dataclass(frozen=True, slots=True)
class Diagnostic:
    loc: Location | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = f"{self.loc}: " if self.loc else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{tag}{self.message}"

    def to_jso(self) -> dict:
        loc = self.loc
        return {
            "path": loc.path if loc else None,
            "line": loc.line if loc and loc.line else None,  # 0: a whole file, no position
            "col": loc.col if loc and loc.line else None,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass
class Diagnostics:
    """Collects every problem of a pass, so that a check reports all, not the first."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, loc: Location | None = None) -> None:
        self.items.append(Diagnostic(loc, message, "error"))

    def warning(self, message: str, loc: Location | None = None) -> None:
        self.items.append(Diagnostic(loc, message, "warning"))

    def add(self, exc: JobError) -> None:
        self.error(exc.message, exc.loc)

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Records a `JobError` raised in the block and carries on after it."""
        try:
            yield
        except JobError as exc:
            self.add(exc)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def __bool__(self) -> bool:
        return bool(self.errors)

    def extend(self, other: Diagnostics) -> None:
        self.items.extend(other.items)
