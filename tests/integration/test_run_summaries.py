"""GET /runs?summary=true: the pages a table loads (the TUI's 100 000 runs)."""

from __future__ import annotations

import time

import httpx

from apsis.model.run import SUMMARY_KEYS

JOBS = {"noop": "program: {type: no-op}\n",
        "echo": "program: {type: shell, command: 'echo {{ n }}'}\nparams: [n]\n"}


def test_summary_pages_are_the_full_pages_cut_down(apsis_daemon):
    check_summary_pages(apsis_daemon(JOBS))


def check_summary_pages(daemon) -> None:
    with httpx.Client(base_url=daemon.api, timeout=30) as http:
        for n in range(5):
            http.post("/runs", json={"job_id": "echo", "args": {"n": str(n)}, "count": 2}
                      ).raise_for_status()
        http.post("/runs", json={"job_id": "noop", "count": 3}).raise_for_status()
        deadline = time.monotonic() + 30
        while len(http.get("/runs", params={"state": "success"}).json()["runs"]) < 13:
            assert time.monotonic() < deadline, "the runs did not finish"
            time.sleep(0.1)

        def pages(**params):
            cursor, found = None, []
            while True:
                page = http.get("/runs", params={"limit": 4, **params,
                                                 **({"cursor": cursor} if cursor else {})})
                page.raise_for_status()
                body = page.json()
                found.append(body["runs"])
                assert isinstance(body["seq"], int)
                cursor = body["cursor"]
                if cursor is None:
                    return found

        full, summaries = pages(), pages(summary="true")
        # The same runs, the same order, the same pages (a cursor from either goes on).
        assert [[r["run_id"] for r in p] for p in summaries] == [[r["run_id"] for r in p] for p in full]
        assert sum(map(len, summaries)) == 13
        for page, cut in zip(full, summaries):
            for run, summary in zip(page, cut):
                assert set(summary) <= set(SUMMARY_KEYS) | {"expected"}
                assert {"run_id", "job_id", "args", "state", "times"} <= set(summary)
                assert summary == {k: v for k, v in run.items() if k in summary}
                assert "program" in run and "program" not in summary
        # Filters apply as to full pages.
        echo = http.get("/runs", params={"summary": "true", "job_id": "echo", "arg.n": "3"}).json()
        assert [r["args"] for r in echo["runs"]] == [{"n": "3"}, {"n": "3"}]
        refused = http.get("/runs", params={"summary": "yes"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_param"
