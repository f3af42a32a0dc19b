"""Small waits shared by the agent tests."""

from __future__ import annotations

import asyncio
import sys

from apsis.agent.client import AgentClient, ProcStatus

PY = sys.executable


async def wait_exit(client: AgentClient, proc_id: str, timeout: float = 10.0) -> ProcStatus:
    """The next exit reported for `proc_id` (others are skipped)."""

    async def wait() -> ProcStatus:
        async for info in client.exits():
            if info.proc_id == proc_id:
                return info
        raise AssertionError("client closed")

    return await asyncio.wait_for(wait(), timeout)
