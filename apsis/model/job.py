"""A job: a YAML file's definition, parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..action import Action
    from ..cond import Condition
    from ..program import Program
    from ..schedule.base import Schedule


@dataclass(eq=False)
class Job:
    job_id: str
    params: list[str]
    program: Program
    schedules: list[Schedule] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    expand: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ad_hoc: bool = False
    path: str | None = None
    # The job file's text as written, for people reading the job (API, TUI); never in
    # to_jso, so events and the job copy stored with each run stay lean.
    source: str | None = field(default=None, repr=False)
    # Where each part was written (`program`, `schedule.0`, `condition.1`, ...), for checks.
    locs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.get("labels", []))

    @property
    def description(self) -> str | None:
        return self.metadata.get("description")

    def to_jso(self) -> dict[str, Any]:
        """The job as the API and the store show it: every key, parsed and normalised."""
        return {
            "job_id": self.job_id,
            "params": list(self.params),
            "schedule": [s.to_jso() for s in self.schedules],
            "program": self.program.to_jso(),
            "condition": [c.to_jso() for c in self.conditions],
            "action": [a.to_jso() for a in self.actions],
            "metadata": dict(self.metadata),
            "expand": self.expand,
            "ad_hoc": self.ad_hoc,
        }


def bind_args(params: list[str], args: dict[str, Any]) -> dict[str, str]:
    """Keeps the args a job's params name: a run is defined by its params alone."""
    return {p: str(args[p]) for p in params if p in args}


def missing_params(params: list[str], args: Mapping[str, Any]) -> list[str]:
    """The params `args` gives no value, in the job's order: a run without them cannot start."""
    return [p for p in params if p not in args]
