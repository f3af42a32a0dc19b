"""time_key: the text of a time that `format_time` wrote is its key as it stands; any
other form is parsed. Both must give the key the datetime gives, or pages and event
filters would sort runs out of time order."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apsis.lib.timefmt import format_time
from apsis.store.keys import time_key

pytestmark = pytest.mark.timeout(60)

TIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                     timezones=st.just(dt.UTC))


@given(TIMES)
def test_the_text_format_time_writes_keys_as_its_datetime(when: dt.datetime) -> None:
    assert time_key(format_time(when)) == time_key(when)


@given(TIMES, st.sampled_from(["+02:00", "-05:30", "+00:00"]))
def test_other_forms_are_parsed(when: dt.datetime, offset: str) -> None:
    text = when.astimezone(dt.timezone(dt.timedelta(
        hours=int(offset[:3]), minutes=int(offset[0] + offset[4:])))).isoformat()
    assert time_key(text) == time_key(when)


def test_not_a_time_is_refused() -> None:
    for text in ("2026-13-01T00:00:00Z", "2026-12-06T24:00:00Z", "yesterday"):
        with pytest.raises(ValueError):
            time_key(text)
