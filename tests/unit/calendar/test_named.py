"""Named calendars from `.apsis-jobs.yaml`'s `calendars:` section."""

from apsis.calendar import get_calendar, parse_calendar_defs
from apsis.parse_context import ParseContext
from apsis.yamlload import load_yaml


def parse(text: str):
    ctx = ParseContext()
    node = load_yaml(text, ".apsis-jobs.yaml")
    return parse_calendar_defs(node["calendars"], ctx), [str(d) for d in ctx.diags.items]


def test_named_calendar_with_extra_holidays():
    cals, errors = parse("""
calendars:
  us-bank: {weekdays: Mon-Fri, holidays: "holidays:US", extra_holidays: [2027-12-24, 2027-12-31]}
""")
    assert errors == []
    bank = cals["us-bank"]
    assert str(bank) == "us-bank"
    assert not bank.contains("2027-12-24") and not bank.contains("2027-11-25")  # extra, Thanksgiving
    assert bank.contains("2027-12-23")
    assert bank.shift("2027-12-23", 1) == "2027-12-27"


def test_sources_lists_references_extra_dates_and_aliases():
    cals, errors = parse("""
calendars:
  trading: {holidays: [market:NYSE, extras], extra_dates: [2026-11-28]}
  extras: {holidays: "holidays:GB", extra_holidays: 2026-12-24}
  nyse: market:NYSE
  weekend: {weekdays: Sat-Sun}
""")
    assert errors == []
    trading = cals["trading"]
    assert not trading.contains("2026-11-26")  # NYSE
    assert not trading.contains("2026-12-28")  # GB: Boxing Day observed
    assert not trading.contains("2026-12-24")  # from `extras`
    assert trading.contains("2026-11-28")  # a Saturday, but an extra date
    assert str(cals["nyse"]) == "nyse" and not cals["nyse"].contains("2026-11-26")
    assert cals["weekend"].contains("2026-11-28") and not cals["weekend"].contains("2026-11-27")


def test_named_calendars_resolve_through_get_calendar():
    cals, _ = parse("calendars:\n  payroll: {weekdays: Mon-Fri, extra_holidays: [2026-01-02]}\n")
    assert get_calendar("payroll", cals) is cals["payroll"]
    assert not get_calendar("payroll", cals).contains("2026-01-02")


def test_errors_are_located_and_hinted():
    cals, errors = parse("""
calendars:
  good: {weekdays: Mon-Fri}
  bad:
    weekdays: Mon-Fro
    holidays: [holidays:XX, goood, Mon-Fri]
    extra_holidays: [2027-13-01]
    colour: red
  Mon-Fri: {}
""")
    assert list(cals) == ["good"]
    joined = "\n".join(errors)
    assert ".apsis-jobs.yaml:5:15: weekdays: not a weekday: 'Fro' (did you mean 'Fri'?)" in joined
    assert ".apsis-jobs.yaml:6:16: holidays: unknown country 'XX'" in joined
    assert "holidays: unknown calendar 'goood' (did you mean 'good'?)" in joined
    assert "holidays: calendar 'Mon-Fri' has no holidays to take" in joined
    assert ".apsis-jobs.yaml:7:22: extra_holidays: not a date: '2027-13-01'" in joined
    assert ".apsis-jobs.yaml:8:5: unknown key 'colour' in calendar 'bad'" in joined
    assert ".apsis-jobs.yaml:9:3: calendar name 'Mon-Fri' is already a built-in calendar" in joined


def test_cycles_are_reported():
    cals, errors = parse("""
calendars:
  a: {holidays: b}
  b: {holidays: a}
""")
    assert cals == {}
    assert any("cycle: a → b → a" in e or "cycle: b → a → b" in e for e in errors)


def test_section_must_be_a_mapping():
    import pytest

    from apsis.errors import JobError

    with pytest.raises(JobError, match="calendars must map names"):
        parse("calendars: [a, b]\n")
