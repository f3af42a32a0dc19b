"""The daemon's shared log of encoded events (apsis.api.events.EventLog)."""

from __future__ import annotations

from apsis.api.events import NO_FILTER, EventLog


def test_a_reader_after_the_last_one_left_reads_what_the_log_dropped_from_the_store():
    # The last reader leaving frees the log; a reader that connects next, before any
    # new event, from a seq inside what was freed must be sent to the store (None), not
    # given an empty page: the daemon spun on that page forever, answering nothing.
    log = EventLog(covers_after=0)
    log.readers += 1
    for seq in range(1, 6):
        log.append({"seq": seq, "type": "run_log", "run_id": "r1"})
    assert [s for s, _ in log.read(2, NO_FILTER).items] == [3, 4, 5]
    log.leave()
    log.readers += 1
    assert log.read(2, NO_FILTER) is None
    assert log.read(5, NO_FILTER).items == []
