"""One bad request must fail alone: nobody else's request, run or read notices it.

A lone surrogate (`"\\ud800"`, valid JSON, no Unicode character) once made the
database refuse a whole group commit: valid POSTs got 500, runs that got 201
stayed `starting` forever, and the daemon kept ghost runs in memory.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from .helpers import FINISHED, assert_error

POISON = '{"job_id": "p", "args": {"x": "\\ud800"}}'


def test_lone_surrogates_fail_alone_while_valid_requests_succeed(apsis_daemon):
    daemon = apsis_daemon({"p": "params: [x]\nprogram: 'echo {{ x }}'\n"})

    async def storm() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=daemon.api, timeout=60.0) as client:
            def bad():
                return client.post("/runs", content=POISON,
                                   headers={"Content-Type": "application/json"})

            def good(i: int):
                return client.post("/runs", json={"job_id": "p", "args": {"x": f"v{i}"}})

            calls = [bad() if i % 2 else good(i) for i in range(128)]
            responses = await asyncio.gather(*calls)
        return responses[1::2], responses[0::2]

    poisoned, valid = asyncio.run(storm())
    for response in poisoned:
        assert_error(response, 422, "bad_text")
        assert "args.x" in response.json()["error"]["message"]
    assert [r.status_code for r in valid] == [201] * len(valid), [r.text for r in valid][:3]

    api = httpx.Client(base_url=daemon.api, timeout=30.0)
    ids = [r.json()["runs"][0]["run_id"] for r in valid]
    deadline = time.monotonic() + 60
    while True:
        states = {i: api.get(f"/runs/{i}").json()["state"] for i in ids}
        if set(states.values()) <= FINISHED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(states.values()) == {"success"}, states
    for run_id in ids[:5]:
        assert api.get(f"/runs/{run_id}/output/output").content.startswith(b"v")
    # Nothing left in memory that the database does not hold.
    assert api.get("/control/stats").json()["unfinished_runs"] == 0
