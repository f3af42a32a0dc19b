"""RunStore: sorted order, incremental filtered view, lookups."""

from __future__ import annotations

import random

from apsis.present import parse_time
from apsis_tui.filter import parse
from apsis_tui.runstore import RunStore, sort_key
from tests.tui.factory import BASE, make_run, make_runs


def ids(store: RunStore) -> list[str]:
    return [run["run_id"] for run in store]


def test_sorted_by_schedule_then_number() -> None:
    store = RunStore()
    store.apply(make_run(3, BASE + 10))
    store.apply(make_run(1, BASE + 20))
    store.apply(make_run(2, BASE + 10))
    store.apply(make_run(10, BASE + 10))
    assert ids(store) == ["r2", "r3", "r10", "r1"]


def test_update_replaces_and_moves() -> None:
    store = RunStore()
    store.apply_many([make_run(i, BASE + i) for i in range(1, 6)])
    store.apply(make_run(2, BASE + 100, state="failure"))
    assert ids(store) == ["r1", "r3", "r4", "r5", "r2"]
    assert store.get("r2")["state"] == "failure"
    assert store.total == 5


def test_index_of_and_now_index() -> None:
    store = RunStore()
    store.apply_many([make_run(i, BASE + (i - 5) * 60) for i in range(10)])
    assert store.index_of("r7") == 7
    assert store.index_of("nope") is None
    assert store.now_index(BASE) == 5  # runs at now count as future
    assert store.now_index(BASE + 1) == 6
    assert store.now_index(0) == 0
    assert store.now_index(BASE * 2) == 10


def test_filter_incremental_matches_full_recompute() -> None:
    rng = random.Random(7)
    predicate = parse("state:running,failure")
    store = RunStore(predicate)
    store.apply_many(make_runs(500))
    for _ in range(2000):
        number = rng.randrange(1, 700)
        state = rng.choice(["running", "failure", "success", "scheduled"])
        store.apply(make_run(number, BASE + rng.randrange(-5000, 5000), state=state))
        if rng.random() < 0.05:
            store.remove(f"r{rng.randrange(1, 700)}")
    incremental = ids(store)
    jobs = store.single_job()
    store.set_predicate(predicate)
    assert ids(store) == incremental
    assert store.single_job() == jobs
    assert all(run["state"] in ("running", "failure") for run in store)
    keys = [sort_key(run) for run in store]
    assert keys == sorted(keys)


def test_run_leaves_and_enters_view() -> None:
    store = RunStore(parse("state:running"))
    assert store.apply(make_run(1, BASE, state="running"))
    assert len(store) == 1
    assert not store.apply(make_run(1, BASE, state="success"))
    assert len(store) == 0 and store.total == 1
    store.set_predicate(None)
    assert ids(store) == ["r1"]


def test_bulk_and_single_paths_agree() -> None:
    runs = make_runs(300)
    bulk, single = RunStore(), RunStore()
    bulk.apply_many(runs)
    single.apply_many(runs[:10])
    for run in runs[10:]:
        single.apply(run)
    assert ids(bulk) == ids(single)


def test_merged_batches_agree_with_runs_applied_one_by_one() -> None:
    # Pages of a load and bursts of events are merged; replacements, runs given twice in
    # a batch and a filter must come out as if each run were applied alone.
    rng = random.Random(11)
    predicate = parse("state:running,failure")
    merged, single = RunStore(predicate), RunStore(predicate)
    for _ in range(30):
        batch = [make_run(rng.randrange(1, 900), BASE + rng.randrange(-5000, 5000),
                          job_id=rng.choice(["a", "b", "c"]),
                          state=rng.choice(["running", "failure", "success"]))
                 for _ in range(rng.randrange(65, 200))]
        merged.apply_many(batch)
        for run in batch:
            single.apply(run)
        assert ids(merged) == ids(single)
        assert merged.total == single.total
        assert merged.single_job() == single.single_job()
        assert merged.job_width() == single.job_width()
    merged.set_predicate(None)
    single.set_predicate(None)
    assert ids(merged) == ids(single)


def test_single_job_and_arg_widths() -> None:
    store = RunStore()
    store.apply(make_run(1, BASE, job_id="a", args={"date": "2024-01-01", "n": "1"}))
    store.apply(make_run(2, BASE, job_id="a", args={"date": "x", "n": "12345"}))
    assert store.single_job() == "a"
    assert store.arg_widths() == {"date": 10, "n": 5}
    store.apply(make_run(3, BASE, job_id="b"))
    assert store.single_job() is None
    store.set_predicate(parse("/a"))
    assert store.single_job() == "a"
    assert store.arg_widths() == {"date": 10, "n": 5}
    store.remove("r1")
    store.remove("r2")
    assert store.single_job() is None and len(store) == 0


def test_stamp_changes_on_apply() -> None:
    store = RunStore()
    store.apply(make_run(1, BASE))
    first = store.stamp("r1")
    store.apply(make_run(1, BASE, state="failure"))
    assert store.stamp("r1") != first


def test_parse_time() -> None:
    assert parse_time("1970-01-01T00:00:10Z") == 10.0
    assert parse_time("1970-01-01T01:00:10+01:00") == 10.0
    assert parse_time("1970-01-01T00:00:10") == 10.0  # naive is UTC
    assert parse_time("garbage") is None
    assert parse_time(None) is None


def test_run_without_schedule_sorts_by_earliest_time() -> None:
    run = {
        "run_id": "r5",
        "job_id": "x",
        "state": "running",
        "times": {"running": "1970-01-01T00:01:00Z"},
    }
    assert sort_key(run) == (60.0, 5, "r5")
    assert sort_key({"run_id": "odd", "times": {}}) == (0.0, -1, "odd")


def test_a_marked_run_ended_when_it_first_finished() -> None:
    from apsis.present import finished_at

    times = {"running": "2026-01-02T09:00:00Z", "success": "2026-01-02T09:00:05Z",
             "failure": "2026-01-03T10:00:00Z"}  # marked failure a day later
    assert finished_at(times) == parse_time("2026-01-02T09:00:05Z")
    assert finished_at({"running": "2026-01-02T09:00:00Z"}) is None


def test_staged_pages_show_at_the_commit_as_if_applied() -> None:
    # A load stages its pages (their work done page by page) and shows them a few at a
    # time: until the commit the rows, counts and lookups are those shown before.
    predicate = parse("state:success,failure")
    newest_first = make_runs(1000)[::-1]
    staged, direct = RunStore(predicate), RunStore(predicate)
    staged.apply_many(newest_first[:200])
    direct.apply_many(newest_first[:200])
    shown = ids(staged)
    for start in range(200, 1000, 200):
        assert not staged.stage(newest_first[start:start + 200])
        direct.apply_many(newest_first[start:start + 200])
    assert ids(staged) == shown and len(staged) == len(shown)
    assert (staged.total, staged.staged) == (200, 800)
    assert staged.index_of("r100") is None and staged.get("r100") is not None
    assert staged.commit() and not staged.commit()
    assert ids(staged) == ids(direct) and (staged.total, staged.staged) == (1000, 0)
    assert staged.arg_widths() == direct.arg_widths()
    assert staged.job_width() == direct.job_width()


def test_what_was_staged_is_shown_before_any_other_change() -> None:
    # An event, a page with a run already held, a filter: each comes after the staged
    # runs, none of which is lost or shown twice.
    runs = make_runs(400)[::-1]
    store = RunStore()
    store.apply_many(runs[:100])
    store.stage(runs[100:200])
    store.apply(make_run(400, BASE + 60, state="failure"))  # an event on a shown run
    assert (store.total, store.staged) == (200, 0)
    store.stage(runs[200:300])
    assert store.stage(runs[250:350])  # r100..r51 are held (staged): applied at once
    assert (store.total, store.staged) == (350, 0)
    store.stage(runs[350:])
    store.set_predicate(parse("state:failure"))
    assert store.staged == 0 and store.total == 400
    assert ids(store) == [r["run_id"] for r in sorted(runs, key=sort_key)
                          if r["state"] == "failure" or r["run_id"] == "r400"]
    store.stage([make_run(n, BASE - n * 3600) for n in range(1000, 1100)])
    store.remove("r1")
    assert (store.total, store.staged) == (499, 0)
