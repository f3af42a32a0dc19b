"""GET /runs?pages=N: many pages in one answer, as JSON Lines, the same pages a client
paging by cursor gets (the TUI loads its 100 000 runs so)."""

from __future__ import annotations

import json

import pytest

from .helpers import assert_error, create, wait_runs

JOBS = {"noop": "program: {type: no-op}\n"}

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("summary", ["true", "false"])
def test_pages_are_the_pages_of_the_cursor(daemon, api, summary) -> None:  # noqa: ANN001
    create(api, "noop", count=25)
    total = len(api.get("/runs", params={"limit": 10000}).json()["runs"])
    wait_runs(api, "noop", total)  # every run finished: both ways read the same runs
    by_cursor, cursor = [], None
    while True:
        page = api.get("/runs", params={"limit": 4, "summary": summary,
                                        **({"cursor": cursor} if cursor else {})}).json()
        by_cursor.append(page)
        cursor = page["cursor"]
        if cursor is None:
            break
    response = api.get("/runs", params={"limit": 4, "summary": summary, "pages": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [p["runs"] for p in lines] == [p["runs"] for p in by_cursor[:3]]
    assert lines[-1]["cursor"] == by_cursor[2]["cursor"]  # where the next request goes on
    # More pages asked for than there are: the answer stops at the last (cursor null).
    rest = api.get("/runs", params={"limit": 4, "summary": summary, "pages": 100,
                                    "cursor": lines[-1]["cursor"]}).text.splitlines()
    assert [json.loads(line)["runs"] for line in rest] == [p["runs"] for p in by_cursor[3:]]
    assert json.loads(rest[-1])["cursor"] is None


def test_a_bad_cursor_or_page_count_is_a_400_before_any_line(daemon, api) -> None:  # noqa: ANN001
    assert_error(api.get("/runs", params={"pages": 2, "cursor": "nonsense"}), 400, "bad_cursor")
    assert_error(api.get("/runs", params={"pages": 0}), 400)
