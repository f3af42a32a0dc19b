"""The engine in-process, on a real SQLite file and a real agent, in a temp dir."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from apsis.config import Config
from apsis.engine.core import Engine, utcnow
from apsis.engine.service import Service
from apsis.jobs_dir import load_jobs_dir
from apsis.model.states import FINISHED
from apsis.store import Store


class EngineHarness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.jobs = tmp_path / "jobs"
        self.jobs.mkdir()
        self.config = Config(jobs=self.jobs, database=tmp_path / "apsis.db")
        self.config.horizon = 3600.0
        self.engine: Engine | None = None
        self.service: Service | None = None
        self.store: Store | None = None

    def write_jobs(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.jobs / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    async def start(self, since: str = "now", *, planned: bool = True, **config: Any) -> Engine:
        """The engine started; with `planned`, once its first window is all created."""
        for key, value in config.items():
            setattr(self.config, key, value)
        self.store = await Store.open(self.config.database)
        jobs_dir = load_jobs_dir(self.jobs)
        assert not jobs_dir.diags.errors, jobs_dir.diags.errors
        self.engine = Engine(self.config, self.store, jobs_dir)
        self.service = Service(self.engine)
        self.engine.url = "http://127.0.0.1:0"
        await self.engine.start(since)
        if planned and self.engine.planning is not None:
            await self.engine.planning
        return self.engine

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def run(self, job_id: str, args: dict[str, str] | None = None, *, delay: float = 0.0,
                  count: int = 1) -> list[str]:
        import datetime as dt

        engine = self.engine
        job = engine.get_job(job_id)
        when = utcnow() + dt.timedelta(seconds=delay)
        runs = await engine.create_runs(job, engine.check_args(job, args or {}), times=[when] * count)
        return [r.run_id for r in runs]

    async def wait(self, run_ids: list[str] | str, timeout: float = 20.0, states=FINISHED) -> dict[str, dict]:
        """Waits until every run is in one of `states`; returns their JSON."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        states = {s.value if hasattr(s, "value") else s for s in states}
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            runs = {i: await self.service.get_run(i) for i in ids}
            if all(r is not None and r["state"] in states for r in runs.values()):
                return runs
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"runs not {sorted(states)} in {timeout}s: "
                                     f"{ {i: r and r['state'] for i, r in runs.items()} }")
            await asyncio.sleep(0.05)


@pytest.fixture
async def harness(tmp_path):
    h = EngineHarness(tmp_path)
    yield h
    await h.stop()
    # The agent outlives the daemon by design; make sure tests leave none behind.
    import signal
    import os
    pid_file = h.config.agent_dir / "server.lock"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
