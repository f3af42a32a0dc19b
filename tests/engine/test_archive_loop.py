"""The daemon's own archiving (`runs.archive` + `runs.retain` in apsis.yaml)."""

from __future__ import annotations

import asyncio

from apsis.store import Store


async def test_finished_runs_move_to_the_archive_once_older_than_retain(harness, tmp_path):
    harness.write_jobs({"quick": "program: {type: no-op}\n"})
    archive_path = tmp_path / "archive.db"
    await harness.start(archive=archive_path, retain=0.5, archive_delay=0.1, archive_every=0.2)
    done = (await harness.run("quick"))[0]
    await harness.wait(done)
    later = (await harness.run("quick", delay=600))[0]  # scheduled: never archived

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while await harness.store.get_run(done) is not None:
        assert loop.time() < deadline, "the finished run was not archived"
        await asyncio.sleep(0.1)

    assert await harness.store.get_run(later) is not None
    archive = await Store.open(archive_path, readonly=True)
    try:
        moved = await archive.get_run(done)
        assert moved is not None and moved["state"] == "success"
        assert await archive.get_run(later) is None
    finally:
        await archive.close()
