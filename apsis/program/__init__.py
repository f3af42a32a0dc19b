"""Programs: what a run executes. Parsing, binding and behaviour live here; the runner
(apsis/engine/runner.py) provides the context they act through (processes, timers,
transitions). One module per type; a new type registers itself in `PROGRAMS`.
"""

from __future__ import annotations

from typing import Any

from ..errors import JobError, Location
from ..lib.strict import as_str_list
from ..parse_context import ParseContext
from .base import (
    PROGRAMS,
    BoundProgram,
    NotSignalable,
    ProcessSpec,
    Program,
    ProgramContext,
    is_template,
    parse_signal,
)
from .noop import NoOpProgram
from .process import OUTPUT_MODES, ArgvProgram, ShellProgram

__all__ = [
    "OUTPUT_MODES", "PROGRAMS", "ArgvProgram", "BoundProgram", "NoOpProgram", "NotSignalable",
    "ProcessSpec", "Program", "ProgramContext", "ShellProgram", "bind_program", "is_template",
    "parse_program", "parse_signal",
]


def parse_program(value: Any, loc: Location | None, ctx: ParseContext) -> Program:
    """A program from its job-file form: a string, a list, or a mapping with `type`."""
    if isinstance(value, str):
        return ShellProgram(command=value)
    if isinstance(value, list):
        try:
            argv = as_str_list(value)
        except ValueError as exc:  # `[true]`: a job error where it is written, not a crash
            raise JobError(f"program argv: {exc}", loc) from None
        if not argv:
            raise JobError("program argv must not be empty", loc)
        return ArgvProgram(argv=argv)
    return PROGRAMS.parse(value, loc, ctx)


def bind_program(jso: dict[str, Any]) -> BoundProgram:
    """The run's rendered program (`run.program`) as a bound program, its values checked.

    Raises ValueError naming the field and the value that is not valid once rendered
    (`program timeout.duration: not a duration: 'abc' ...`), or the type that cannot
    be loaded.
    """
    if not isinstance(jso, dict):
        raise ValueError(f"program must be a mapping, not {type(jso).__name__}")
    try:
        cls = PROGRAMS.get(jso.get("type"))
        return cls.bind(jso)
    except JobError as exc:  # an extension class's own parsing
        raise ValueError(f"program: {exc.message}") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"program: {type(exc).__name__}: {exc}") from None
