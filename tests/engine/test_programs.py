"""Programs own their behaviour: templated limits bound per run, stop and signal per type,
and what survives a daemon restart."""

from __future__ import annotations

import pytest

from apsis.engine.errors import Conflict


async def _log(harness, run_id: str) -> list[str]:
    return [entry["message"] for entry in await harness.store.run_log(run_id)]


async def test_templated_noop_duration_is_bound_per_run(harness):
    harness.write_jobs({"nap": "params: [d]\nprogram: {type: no-op, duration: '{{ d }}'}\n"})
    await harness.start()
    [good] = await harness.run("nap", {"d": "0.2s"})
    [bad] = await harness.run("nap", {"d": "abc"})
    runs = await harness.wait([good, bad])
    assert runs[good]["state"] == "success"
    assert runs[bad]["state"] == "error"
    assert "program duration: not a duration: 'abc'" in runs[bad]["message"]


async def test_templated_timeout_and_signal(harness):
    harness.write_jobs({"slow": """\
        params: [t, sig]
        program:
          type: shell
          # Foreground sleeps: the signal goes to the process group, and a program is
          # over when its group is (a background `sleep 30 &` ignores SIGINT and would
          # keep it running until the grace period's SIGKILL).
          command: "trap 'echo got INT; exit 7' INT; for i in $(seq 300); do sleep 0.1; done"
          timeout: {duration: '{{ t }}', signal: '{{ sig }}'}
        """})
    await harness.start()
    [run_id] = await harness.run("slow", {"t": "1s", "sig": "INT"})
    [bad] = await harness.run("slow", {"t": "1s", "sig": "NOPE"})
    runs = await harness.wait([run_id, bad])
    run = runs[run_id]
    assert run["state"] == "failure" and "timed out after" in run["message"], run["message"]
    assert "timeout: sending SIGINT" in await _log(harness, run_id)
    assert await harness.service.read_output(run_id, "output") == b"got INT\n"
    assert runs[bad]["state"] == "error"
    assert "program timeout.signal: unknown signal 'NOPE'" in runs[bad]["message"]


async def test_stop_kills_after_a_templated_grace_period(harness):
    harness.write_jobs({"stubborn": """\
        params: [grace]
        program:
          type: shell
          command: "trap '' TERM; echo up; sleep 30 & wait; sleep 30"
          stop: {signal: TERM, grace_period: '{{ grace }}'}
        """})
    await harness.start()
    [run_id] = await harness.run("stubborn", {"grace": "1s"})
    await harness.wait(run_id, states={"running"})
    await harness.service.stop(run_id)
    run = (await harness.wait(run_id, timeout=15))[run_id]
    assert run["state"] == "failure" and run["message"] == "stopped by request; killed by SIGKILL"
    assert "still running 1s after the stop signal: SIGKILL" in await _log(harness, run_id)


async def test_noop_cannot_be_signalled_and_stops_at_once(harness):
    harness.write_jobs({"idle": "program: {type: no-op, duration: 1h}\n"})
    await harness.start()
    [run_id] = await harness.run("idle")
    await harness.wait(run_id, states={"running"})
    with pytest.raises(Conflict) as exc:
        await harness.service.signal(run_id, "TERM")
    assert exc.value.code == "bad_program"
    await harness.service.stop(run_id)
    run = (await harness.wait(run_id, timeout=5))[run_id]
    assert run["state"] == "success" and run["message"] == "stopped by request"


async def test_extension_program_is_stopped_by_cancelling_it(harness):
    harness.write_jobs({
        "ext": "program: {type: tests.engine.extension_programs.Sleepy, seconds: 60}\n"})
    await harness.start()
    [run_id] = await harness.run("ext")
    await harness.wait(run_id, states={"running"})
    with pytest.raises(Conflict):
        await harness.service.signal(run_id, "TERM")
    await harness.service.stop(run_id)
    run = (await harness.wait(run_id, timeout=5))[run_id]
    assert run["state"] == "success" and run["message"] == "stopped by request"


async def test_after_a_restart_noop_finishes_and_extension_is_an_error(harness):
    harness.write_jobs({
        "nap": "program: {type: no-op, duration: 1.5s}\n",
        "ext": "program: {type: tests.engine.extension_programs.Sleepy, seconds: 60}\n",
    })
    await harness.start()
    [nap] = await harness.run("nap")
    [ext] = await harness.run("ext")
    await harness.wait([nap, ext], states={"running"})
    await harness.stop()
    await harness.start()
    runs = await harness.wait([nap, ext], timeout=10)
    assert runs[nap]["state"] == "success"
    assert runs[ext]["state"] == "error" and "cannot be reattached" in runs[ext]["message"]
