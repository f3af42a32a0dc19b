"""A program extension, loaded by its dotted name in test job files."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from apsis.program import Program


@dataclass
class Sleepy(Program):
    """Waits, then ends in the state it was told."""

    seconds: float = 0.0
    outcome: str = "success"

    @classmethod
    def from_jso(cls, f: Any, ctx: Any) -> Sleepy:
        return cls(seconds=float(f.get("seconds", 0.0)), outcome=str(f.get("outcome", "success")))

    def to_jso(self) -> dict[str, Any]:
        return {"type": "tests.engine.extension_programs.Sleepy", "seconds": self.seconds,
                "outcome": self.outcome}

    async def execute(self, run: dict[str, Any]) -> tuple[str, str | None]:
        await asyncio.sleep(self.seconds)
        return self.outcome, f"slept {self.seconds:g}s for {run['run_id']}"
