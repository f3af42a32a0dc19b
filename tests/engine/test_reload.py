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


async def test_reloading_the_files_that_changed_parses_only_those(harness, monkeypatch):
    """The watcher names the files it saw change: only they are parsed again."""
    import apsis.jobs_dir

    harness.write_jobs({f"j{i}": "params: [x]\nprogram: {type: no-op}\n" for i in range(20)})
    harness.write_jobs({"ops/a": "program: {type: no-op}\n"})
    await harness.start()
    engine = harness.engine
    parsed: list[str] = []
    real = apsis.jobs_dir.load_job_file
    monkeypatch.setattr(apsis.jobs_dir, "load_job_file",
                        lambda path, job_id, *a: parsed.append(job_id) or real(path, job_id, *a))
    jobs = harness.jobs
    (jobs / "j3.yaml").write_text("params: [x]\nprogram: {type: no-op, duration: 1}\n")
    (jobs / "j4.yaml").write_text("params: [x]\nprogram: {type: no-op, duration: soon}\n")
    (jobs / "ops" / "a.yaml").unlink()
    (jobs / "new.yaml").write_text("program: {type: no-op}\n")
    (jobs / "new.yml").write_text("program: {type: no-op}\n")
    result = await engine.reload_jobs(paths=[jobs / n for n in
                                             ("j3.yaml", "j4.yaml", "ops/a.yaml", "new.yaml", "new.yml")])
    assert sorted(parsed) == ["j3", "j4", "new"]
    assert (result["added"], result["changed"], result["removed"]) == (["new"], ["j3"], ["ops/a"])
    assert any("j4.yaml" in e and "duration" in e for e in result["errors"])
    assert engine.jobs_dir.jobs["j4"].program.to_jso()["duration"] == 0  # the old one stays
    assert len(engine.jobs_dir.jobs) == 21  # j0..j19 and new
    [r] = await harness.run("j3", {"x": "1"})
    assert (await harness.wait(r))[r]["state"] == "success"

    # The directory's config changed: everything is loaded again.
    parsed.clear()
    (jobs / ".apsis-jobs.yaml").write_text("globals: {x: 1}\n")
    await engine.reload_jobs(paths=[jobs / ".apsis-jobs.yaml"])
    assert len(parsed) == 21
