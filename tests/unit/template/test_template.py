"""Templates: precedence of args, strictness, shquote, calendars via expand, functions."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from apsis.calendar import Calendar, get_calendar, parse_calendar_defs
from apsis.parse_context import ParseContext
from apsis.template import (
    TemplateError,
    expand_args,
    merge_expand,
    parse_expand,
    render,
    render_value,
    template_args,
    template_names,
    today,
    unquoted_args_in_shell,
)
from apsis.yamlload import load_yaml

EXPAND = {
    "country": {
        "US": {"tz": "America/New_York", "calendar": "market:NYSE"},
        "GB": {"tz": "Europe/London", "calendar": "holidays:GB"},
    }
}


def targs(args, **kw):
    expansions = expand_args(args, kw.pop("expand", EXPAND), kw.get("calendars"))
    return template_args(globals_=kw.pop("globals_", {}), expansions=expansions, args=args, **kw)


def test_precedence_later_wins():
    t = template_args(
        globals_={"a": "global", "b": "global", "c": "global", "d": "global", "e": "global", "g": "g"},
        expansions={"b": "expansion", "c": "expansion", "d": "expansion", "e": "expansion"},
        args={"c": "arg", "run_id": "arg", "job_id": "arg"},
        run_id="r7",
        job_id="data/load",
    )
    assert render("{{ a }} {{ b }} {{ c }} {{ run_id }} {{ job_id }} {{ g }}", t) == \
        "global expansion arg r7 data/load g"


def test_args_shadow_functions():
    t = template_args(globals_={}, expansions={}, args={"today": "2020-01-01"})
    assert render("{{ today }}", t) == "2020-01-01"


def test_undefined_name_message():
    t = targs({"date": "2026-11-27"}, run_id="r1")
    with pytest.raises(TemplateError) as exc:
        render("load --date {{ dat }}", t)
    message = str(exc.value)
    assert message.startswith("undefined name 'dat' (did you mean 'date'?) in template 'load --date {{ dat }}'")
    assert "available: date, run_id" in message


def test_undefined_name_in_a_branch_not_taken_is_still_an_error():
    with pytest.raises(TemplateError, match="undefined name 'nope'"):
        render("{% if false %}{{ nope }}{% endif %}", {})


def test_is_defined_tests_are_allowed():
    assert render("{{ x if x is defined else 'default' }}", {}) == "default"
    assert render("{{ x if x is defined else 'default' }}", {"x": "given"}) == "given"


def test_undefined_attribute_is_an_error():
    with pytest.raises(TemplateError, match="has no attribute 'shift'"):
        render("{{ date.shift(1) }}", {"date": "2026-11-27"})


def test_syntax_error_names_the_line():
    with pytest.raises(TemplateError) as exc:
        render("echo one\necho {{ x }\n", {"x": 1})
    assert "template syntax error" in str(exc.value)
    assert "at line 2: 'echo {{ x }'" in str(exc.value)


def test_no_jinja_syntax_is_returned_as_is():
    assert render("plain text", {}) == "plain text"


def test_trailing_newline_is_kept():
    assert render("echo {{ x }}\n", {"x": "a"}) == "echo a\n"


def test_no_autoescape():
    assert render("{{ x }}", {"x": "<a & b>"}) == "<a & b>"


def test_shquote_filter_and_function():
    t = {"x": "it's a; rm -rf /", "y": "plain"}
    assert render("{{ x|shquote }}", t) == "'it'\"'\"'s a; rm -rf /'"
    assert render("{{ shquote(x) }}", t) == "'it'\"'\"'s a; rm -rf /'"
    assert render("{{ y|shquote }}", t) == "plain"


def test_calendar_object_from_expand():
    t = targs({"country": "US", "date": "2026-11-27"})
    assert render("{{ calendar }}", t) == "market:NYSE"
    assert render("{{ calendar.shift(date, -1) }}", t) == "2026-11-25"  # Thanksgiving skipped
    assert render("{{ calendar.next('2026-11-26') }} {{ calendar.prev('2026-11-26') }}", t) == \
        "2026-11-27 2026-11-25"
    assert render("{{ calendar.contains('2026-11-26') }}", t) == "False"
    assert render("{{ calendar.before(date) }} {{ calendar.after(date) }}", t) == "2026-11-25 2026-11-30"
    assert render("{{ calendar|shquote }} {{ tz }}", t) == "market:NYSE America/New_York"
    gb = targs({"country": "GB", "date": "2026-12-29"})
    assert render("{{ calendar.shift(date, -1) }} {{ tz }}", gb) == "2026-12-24 Europe/London"


def test_expand_ignores_values_not_in_the_table():
    assert expand_args({"country": "FR", "other": "x"}, EXPAND) == {}


def test_expand_uses_named_calendars():
    node = load_yaml("calendars:\n  bank: {extra_holidays: [2026-11-27]}\n", "c.yaml")
    named = parse_calendar_defs(node["calendars"], ParseContext())
    expand = {"country": {"US": {"calendar": "bank"}}}
    t = targs({"country": "US"}, expand=expand, calendars=named)
    assert render("{{ calendar }} {{ calendar.shift('2026-11-26', 1) }}", t) == "bank 2026-11-30"
    assert render("{{ get_calendar('bank').contains('2026-11-27') }}", t) == "False"
    with pytest.raises(ValueError, match="unknown calendar 'bnk'"):
        expand_args({"country": "US"}, {"country": {"US": {"calendar": "bnk"}}}, named)


def test_job_expand_merges_over_the_jobs_dir_expand():
    job = {"country": {"US": {"tz": "UTC"}, "FR": {"tz": "Europe/Paris"}}}
    merged = merge_expand(EXPAND, job)
    assert merged["country"]["US"] == {"tz": "UTC", "calendar": "market:NYSE"}
    assert merged["country"]["FR"] == {"tz": "Europe/Paris"}
    assert merged["country"]["GB"] == EXPAND["country"]["GB"]
    assert EXPAND["country"]["US"]["tz"] == "America/New_York"  # inputs untouched


def test_get_calendar_function():
    assert render("{{ get_calendar('Mon-Fri').shift('2026-11-27', 1) }}", {}) == "2026-11-30"
    with pytest.raises(TemplateError, match="unknown calendar"):
        render("{{ get_calendar('nope') }}", {})


def test_today_and_now():
    zone = "Pacific/Kiritimati"  # UTC+14: differs from UTC's date for most of the day
    before = dt.datetime.now(ZoneInfo(zone)).date().isoformat()
    rendered = render("{{ today('Pacific/Kiritimati') }}", {})
    after = dt.datetime.now(ZoneInfo(zone)).date().isoformat()
    assert rendered in (before, after)
    assert today() in (before, after, dt.datetime.now(dt.UTC).date().isoformat(),
                       (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).date().isoformat())
    now = render("{{ now().tzinfo }} {{ now().year > 2000 }}", {})
    assert now == "UTC True"
    with pytest.raises(TemplateError, match="unknown time zone 'Mars/Base'"):
        render("{{ today('Mars/Base') }}", {})


def test_functions_from_module_attr():
    t = template_args(globals_={}, expansions={}, args={"date": "2026-11-27"},
                      functions={"fiscal_quarter": "tests.unit.template.fake_functions:fiscal_quarter",
                                 "shout": "tests.unit.template.fake_functions:helpers.shout"})
    assert render("{{ fiscal_quarter(date) }} {{ shout('hi') }}", t) == "2026Q4 HI!"


@pytest.mark.parametrize("spec, fragment", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("tests.unit.template.fake_functions:nope", "has no attribute 'nope'"),
    ("justamodule", "is not 'module:attribute'"),
])
def test_bad_function_specs(spec, fragment):
    with pytest.raises(ValueError, match="template function 'f'") as exc:
        template_args(globals_={}, expansions={}, args={}, functions={"f": spec})
    assert fragment in str(exc.value)


def test_render_value_recurses():
    value = {"argv": ["echo", "{{ x }}"], "env": {"X": "{{ x }}"}, "n": 3, "none": None}
    assert render_value(value, {"x": "hi"}) == {"argv": ["echo", "hi"], "env": {"X": "hi"}, "n": 3,
                                                "none": None}


def test_template_names():
    assert template_names("{{ a }} {% for x in items %}{{ x }}{{ b|shquote }}{% endfor %}") == \
        {"a", "items", "b"}
    with pytest.raises(TemplateError, match="syntax error"):
        template_names("{{ a")


@pytest.mark.parametrize("command, unquoted", [
    ("load {{ date }}", ["date"]),
    ("load {{ date|shquote }}", []),
    ("load {{ shquote(date) }}", []),
    ("load '{{ date }}'", ["date"]),  # single quotes do not protect against a quote inside
    ("load {{ date|upper }}", ["date"]),
    ("load {{ date|upper|shquote }}", []),
    ("load {{ 'x' ~ date }}", ["date"]),
    ("load {{ calendar.shift(date, -1) }}", []),  # a function's result, not the arg
    ("{% if country == 'US' %}us{% endif %}", []),
    ("{{ a if flag else b }}", ["a", "b"]),
    ("{% for d in [date] %}{{ d }}{% endfor %}", []),
    ("{{ country }} {{ date }} {{ country }}", ["country", "date"]),
    ("{{ date", []),  # a syntax error is reported by rendering, not here
])
def test_unquoted_args_in_shell(command, unquoted):
    assert unquoted_args_in_shell(command, ["date", "country", "a", "b", "flag"]) == unquoted


def parse(text):
    ctx = ParseContext()
    node = load_yaml(text, "job.yaml")
    return parse_expand(node["expand"], ctx), [str(d) for d in ctx.diags.items]


def test_parse_expand():
    table, errors = parse("""
expand:
  country:
    US: {tz: America/New_York, calendar: market:NYSE}
    GB: {tz: Europe/London, calendar: holidays:GB, lag: 2}
  code:
    1: {name: one}
""")
    assert errors == []
    assert table == {"country": {"US": {"tz": "America/New_York", "calendar": "market:NYSE"},
                                 "GB": {"tz": "Europe/London", "calendar": "holidays:GB", "lag": 2}},
                     "code": {"1": {"name": "one"}}}


def test_parse_expand_errors_are_located():
    _, errors = parse("""
expand:
  country:
    US: {calendar: market:NYSX, 2bad: x, nested: [1, 2]}
    true: {tz: UTC}
    GB: London
  other: [1]
""")
    joined = "\n".join(errors)
    assert "job.yaml:4:20: expand.country.US.calendar: unknown market 'NYSX'" in joined
    assert "job.yaml:4:33: expand.country.US: '2bad' is not a usable template arg name" in joined
    assert "expand.country.US.nested: expected a single value, not a list" in joined
    assert "job.yaml:5:5: expand.country: True is read as a boolean; quote it" in joined
    assert "job.yaml:6:9: expand.country.GB must map template arg names to values" in joined
    assert "job.yaml:7:10: expand.other must map values of 'other' to template args" in joined


def test_parse_expand_knows_named_calendars():
    node = load_yaml("calendars:\n  bank: {extra_holidays: [2026-11-27]}\n", "c.yaml")
    named = parse_calendar_defs(node["calendars"], ParseContext())
    ctx = ParseContext(get_calendar=lambda name: get_calendar(name, named))
    table = parse_expand(load_yaml("country: {US: {calendar: bank}}", "j.yaml"), ctx)
    assert ctx.diags.items == []
    assert isinstance(expand_args({"country": "US"}, table, named)["calendar"], Calendar)
