"""Reloading jobs: changes take effect, a broken file never takes the daemon down."""



async def test_broken_file_keeps_the_previous_version(harness):
    harness.write_jobs({"a": "params: [x]\nprogram: {type: no-op}\n"})
    await harness.start()
    engine = harness.engine
    (harness.jobs / "a.yaml").write_text("params: [x]\nprogram: {type: no-op, duration: soon}\n")
    (harness.jobs / "b.yaml").write_text("program: {type: no-op}\n")
    result = await engine.reload_jobs()
    assert result["added"] == ["b"] and result["changed"] == [] and result["removed"] == []
    assert any("a.yaml" in e and "duration" in e for e in result["errors"])
    [r] = await harness.run("a", {"x": "1"})  # the old definition still runs
    assert (await harness.wait(r))[r]["state"] == "success"


async def test_dry_run_changes_nothing_and_removal_reschedules(harness):
    harness.write_jobs({"tick": "schedule: {type: interval, interval: 1h}\nprogram: {type: no-op}\n"})
    await harness.start(horizon=7200)
    engine = harness.engine
    scheduled = [r for r in engine.runs.values() if r.job_id == "tick"]
    assert scheduled
    (harness.jobs / "tick.yaml").unlink()
    assert (await engine.reload_jobs(dry_run=True))["removed"] == ["tick"]
    assert "tick" in engine.jobs_dir.jobs
    await engine.reload_jobs()
    assert "tick" not in engine.jobs_dir.jobs
    runs = await harness.wait([r.run_id for r in scheduled])
    assert all(r["state"] == "skipped" and "removed" in r["message"] for r in runs.values())


async def test_reload_events_are_published(harness):
    harness.write_jobs({"a": "program: {type: no-op}\n"})
    await harness.start()
    sub = harness.engine.bus.subscribe()
    (harness.jobs / "a.yaml").write_text("program: {type: no-op, duration: 1}\n")
    await harness.engine.reload_jobs()
    types = []
    while not sub.queue.empty():
        types.append((await sub.get())["type"])
    assert "job_changed" in types and "jobs_reloaded" in types
