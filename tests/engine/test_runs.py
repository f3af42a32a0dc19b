"""Runs through the engine: programs, outputs, operations, conditions, actions."""

import asyncio

import pytest

from apsis.lib.timefmt import parse_time
from apsis.model.states import State, TransitionError
from apsis.engine.errors import Conflict, NotFound


async def test_shell_success_and_output(harness):
    harness.write_jobs({"hello": "params: [who]\nprogram: 'printf \"hi %s\\n\" {{ who|shquote }}; printf \"\\033[31mred\\033[0m\\n\"'\n"})
    await harness.start()
    [run_id] = await harness.run("hello", {"who": "bob"})
    run = (await harness.wait(run_id))[run_id]
    assert run["state"] == "success" and run["exit_code"] == 0
    data = await harness.service.read_output(run_id, "output")
    assert data == b"hi bob\n\x1b[31mred\x1b[0m\n"
    times = run["times"]
    assert parse_time(times["starting"]) <= parse_time(times["running"]) <= parse_time(times["success"])


async def test_failure_records_exit_code_and_env(harness):
    harness.write_jobs({"fail": "params: [x]\nprogram: 'echo $APSIS_RUN_ID $APSIS_JOB_ID $APSIS_ARG_X; exit 3'\n"})
    await harness.start()
    [run_id] = await harness.run("fail", {"x": "7"})
    run = (await harness.wait(run_id))[run_id]
    assert run["state"] == "failure" and run["exit_code"] == 3 and "exit code 3" in run["message"]
    assert await harness.service.read_output(run_id, "output") == f"{run_id} fail 7\n".encode()


async def test_no_such_program_is_an_error(harness):
    harness.write_jobs({"bad": "program: [/nonexistent/prog]\n"})
    await harness.start()
    [run_id] = await harness.run("bad")
    run = (await harness.wait(run_id))[run_id]
    assert run["state"] == "error" and "nonexistent" in run["message"]


async def test_split_outputs(harness):
    harness.write_jobs({"split": "program: {type: shell, command: 'echo out; echo err >&2', outputs: split}\n"})
    await harness.start()
    [run_id] = await harness.run("split")
    await harness.wait(run_id)
    assert await harness.service.read_output(run_id, "stdout") == b"out\n"
    assert await harness.service.read_output(run_id, "stderr") == b"err\n"


async def test_timeout_is_a_failure_that_says_so(harness):
    harness.write_jobs({"slow": "program: {type: shell, command: 'sleep 30', timeout: 1s}\n"})
    await harness.start()
    [run_id] = await harness.run("slow")
    run = (await harness.wait(run_id))[run_id]
    assert run["state"] == "failure" and "timed out" in run["message"]


async def test_noop_outcomes(harness):
    harness.write_jobs({"ok": "program: {type: no-op}\n", "no": "program: {type: no-op, success: false}\n",
                        "err": "program: {type: no-op, success: null}\n"})
    await harness.start()
    ids = [(await harness.run(j))[0] for j in ("ok", "no", "err")]
    runs = await harness.wait(ids)
    assert [runs[i]["state"] for i in ids] == ["success", "failure", "error"]


async def test_operations_and_their_409s(harness):
    harness.write_jobs({"later": "program: {type: no-op}\n", "long": "program: 'sleep 30'\n"})
    await harness.start()
    service = harness.service
    [a] = await harness.run("later", delay=3600)
    await service.skip(a)
    assert (await service.get_run(a))["state"] == "skipped"
    with pytest.raises(Conflict):
        await service.skip(a)
    [b] = await harness.run("later", delay=3600)
    await service.start(b)
    await harness.wait(b)
    [c] = await harness.run("long")
    await harness.wait(c, states={"running"})
    await service.stop(c)
    run = (await harness.wait(c))[c]
    assert run["state"] == "success" and "stopped" in run["message"]
    marked = await service.mark(c, State.FAILURE)
    assert marked.state == State.FAILURE
    new = await service.rerun(c)
    assert new.rerun_of == c and new.attempt == 2
    with pytest.raises(NotFound):
        await service.skip("r999999")


async def test_dependencies_resolve_in_any_order(harness):
    harness.write_jobs({
        "up": "params: [n]\nprogram: {type: no-op}\n",
        "down": "params: [n]\nprogram: {type: no-op}\ncondition: {type: dependency, job_id: up}\n",
    })
    await harness.start()
    downs = [(await harness.run("down", {"n": str(i)}))[0] for i in range(200)]
    await asyncio.sleep(0.3)
    states = {(await harness.service.get_run(d))["state"] for d in downs}
    assert states == {"waiting"}
    ups = []
    for i in reversed(range(200)):
        ups += await harness.run("up", {"n": str(i)})
    runs = await harness.wait(downs + ups, timeout=60)
    assert {r["state"] for r in runs.values()} == {"success"}
    for i, d in enumerate(downs):  # each waited for its own upstream
        up = runs[ups[199 - i]]
        assert parse_time(runs[d]["times"]["starting"]) >= parse_time(up["times"]["success"])


async def test_max_running_and_skip_duplicate(harness):
    harness.write_jobs({
        "one": "program: 'sleep 0.5'\ncondition: {type: max_running, count: 1}\n",
        "dup": "program: 'sleep 2'\ncondition: {type: skip_duplicate}\n",
    })
    await harness.start()
    ids = await harness.run("one", count=3)
    runs = await harness.wait(ids, timeout=30)
    spans = sorted((parse_time(r["times"]["running"]), parse_time(r["times"]["success"]))
                   for r in runs.values())
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end  # never two at once
    first, second = await harness.run("dup", count=2)
    runs = await harness.wait([first, second], timeout=30)
    assert sorted(r["state"] for r in runs.values()) == ["skipped", "success"]


async def test_retry_action(harness):
    harness.write_jobs({"flaky": "program: 'exit 1'\naction: {type: retry, count: 2, delay: 0.1s}\n"})
    await harness.start()
    [first] = await harness.run("flaky")
    await harness.wait(first)
    for _ in range(200):
        found = (await harness.store.query_runs(job_id="flaky", limit=10)).runs
        if len(found) == 3 and all(r["state"] == "failure" for r in found):
            break
        await asyncio.sleep(0.1)
    attempts = sorted((r["attempt"], r["rerun_of"]) for r in found)
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert attempts[1][1] == first


async def test_successors_get_the_same_args(harness):
    harness.write_jobs({
        "a": "params: [d]\nprogram: {type: no-op}\nsuccessors: b\n",
        "b": "params: [d]\nprogram: {type: no-op}\n",
    })
    await harness.start()
    [a] = await harness.run("a", {"d": "x"})
    await harness.wait(a)
    for _ in range(200):
        found = (await harness.store.query_runs(job_id="b", limit=10)).runs
        if found and found[0]["state"] == "success":
            break
        await asyncio.sleep(0.05)
    assert found[0]["args"] == {"d": "x"}


async def test_bad_template_binds_to_an_error_run(harness):
    harness.write_jobs({"t": "params: [x]\nprogram: 'echo {{ x.nope.deeper }}'\n"})
    await harness.start()
    [r] = await harness.run("t", {"x": "1"})
    run = (await harness.wait(r))[r]
    assert run["state"] == "error" and "cannot bind" in run["message"]


async def test_transition_table_is_enforced(harness):
    harness.write_jobs({"x": "program: {type: no-op}\n"})
    await harness.start()
    [r] = await harness.run("x", delay=3600)
    run = harness.engine.runs[r]
    with pytest.raises(TransitionError):
        await harness.engine.transition(run, State.SUCCESS)


async def test_extension_program_by_dotted_name(harness):
    from apsis.jobs_dir import load_jobs_dir

    harness.write_jobs({"typo": "program: {type: tests.engine.extension_programs.Nope}\n"})
    [error] = load_jobs_dir(harness.jobs).diags.errors
    assert "cannot load program class" in error.message
    (harness.jobs / "typo.yaml").unlink()
    harness.write_jobs({
        "ext": "program: {type: tests.engine.extension_programs.Sleepy, seconds: 0.2, outcome: failure}\n",
    })
    await harness.start()
    [r] = await harness.run("ext")
    run = (await harness.wait(r))[r]
    assert run["state"] == "failure" and "slept 0.2s" in run["message"]
