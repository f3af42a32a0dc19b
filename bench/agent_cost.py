"""What the agent costs: memory per supervised run, spawn latency against raw spawns,
and a burst of starts sent at once (as the daemon sends a 2 000-run POST): its rate, and
the agent's CPU per spawn, which a loaded machine disturbs less than a rate.

Run: `.venv/bin/python bench/agent_cost.py [--max-procs 1000] [--spawns 300] [--burst 2000]`.
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apsis.agent.client import AgentClient, local_connect_command


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 3),
        "p99_ms": round(pct(values, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
    }


async def wait_exits(client: AgentClient, proc_ids: set[str]) -> None:
    async for info in client.exits():
        proc_ids.discard(info.proc_id)
        if not proc_ids:
            return


async def measure_memory(client: AgentClient, agent_pid: int, counts: list[int]) -> dict:
    out: dict = {"rss_kb_idle": rss_kb(agent_pid)}
    started: list[str] = []
    try:
        for n in counts:
            while len(started) < n:
                proc_id = f"m{len(started)}"
                await client.start(["sleep", "30"], proc_id=proc_id)
                started.append(proc_id)
            await asyncio.sleep(0.2)
            out[f"rss_kb_{n}"] = rss_kb(agent_pid)
    finally:
        for proc_id in started:
            await client.signal(proc_id, "SIGKILL")
        await asyncio.wait_for(wait_exits(client, set(started)), 60)
        for proc_id in started:
            await client.clean(proc_id)
    lo, hi = counts[0], counts[-1]
    out["kb_per_run"] = round((out[f"rss_kb_{hi}"] - out[f"rss_kb_{lo}"]) / (hi - lo), 2)
    out["rss_kb_after_cleanup"] = rss_kb(agent_pid)
    return out


async def measure_spawn(client: AgentClient, n: int) -> dict:
    via_agent: list[float] = []
    roundtrip: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        await client.start(["true"], proc_id=f"s{i}")
        t1 = time.perf_counter()
        await asyncio.wait_for(wait_exits(client, {f"s{i}"}), 10)
        t2 = time.perf_counter()
        via_agent.append(t1 - t0)
        roundtrip.append(t2 - t0)
        await client.clean(f"s{i}")

    raw_spawn: list[float] = []
    raw_roundtrip: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("true")
        t1 = time.perf_counter()
        await proc.wait()
        t2 = time.perf_counter()
        raw_spawn.append(t1 - t0)
        raw_roundtrip.append(t2 - t0)
    return {
        "agent_start_reply": summary_ms(via_agent),
        "raw_asyncio_spawn": summary_ms(raw_spawn),
        "agent_start_to_exit_event": summary_ms(roundtrip),
        "raw_asyncio_spawn_and_wait": summary_ms(raw_roundtrip),
    }


async def measure_burst(client: AgentClient, agent_pid: int, n: int) -> dict:
    """`n` starts of `/bin/sh -c true` sent at once, until every exit is reported."""
    ids = [f"b{i}" for i in range(n)]
    cpu = cpu_seconds(agent_pid)
    t0 = time.perf_counter()
    exits = asyncio.ensure_future(wait_exits(client, set(ids)))
    await asyncio.gather(*(client.start(["/bin/sh", "-c", "true"], proc_id=i) for i in ids))
    await asyncio.wait_for(exits, 120)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(agent_pid) - cpu
    await asyncio.gather(*(client.clean(i) for i in ids))
    return {"runs_per_s": round(n / elapsed, 1), "agent_cpu_ms_per_spawn": round(cpu / n * 1000, 3)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-procs", type=int, default=1000)
    parser.add_argument("--spawns", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()
    counts = [c for c in (1, 100, 1000) if c <= args.max_procs] or [1, args.max_procs]
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "agent"
        client = AgentClient(request_timeout=60)
        t0 = time.perf_counter()
        await client.connect(local_connect_command(state_dir, idle_timeout=1))
        cold = time.perf_counter() - t0
        agent_pid = client.hello["pid"]
        try:
            warm_client = AgentClient()
            t0 = time.perf_counter()
            await warm_client.connect(local_connect_command(state_dir, idle_timeout=1))
            warm = time.perf_counter() - t0
            await warm_client.close()
            result = {
                "connect_cold_ms": round(cold * 1000, 1),
                "connect_warm_ms": round(warm * 1000, 1),
                "memory": await measure_memory(client, agent_pid, counts),
                "spawn": await measure_spawn(client, args.spawns),
                "burst": await measure_burst(client, agent_pid, args.burst),
            }
        finally:
            await client.close()
            try:
                os.kill(agent_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
