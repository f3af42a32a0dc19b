"""The Runs screen filter language: parsing and matching."""

from __future__ import annotations

import pytest

from apsis_tui.filter import add_term, format_term, parse, parse_states

RUN = {
    "run_id": "r1234",
    "job_id": "data/load prices",
    "args": {"date": "2024-05-01", "country": "FR"},
    "state": "running",
    "labels": ["nightly", "finance"],
    "times": {},
}


def matches(text: str, run: dict = RUN) -> bool:
    return parse(text)(run)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", True),
        ("   ", True),
        ("job:data/load", True),
        ("job:load", True),  # substring
        ("job:LOAD", True),  # case-insensitive
        ("job:other", False),
        ('job:"load prices"', True),  # quotes keep spaces
        ("job:other job:load", True),  # job terms OR together
        ("state:running", True),
        ("state:failure", False),
        ("state:failure,running", True),  # comma list
        ("state:failure state:running", True),  # several terms OR together
        ("state:run", True),  # prefix names every state it starts
        ("state:active", True),
        ("state:finished", False),
        ("state:bogus", False),
        ("label:nightly", True),
        ("label:night", False),  # labels match exactly
        ("label:nightly label:finance", True),  # labels AND together
        ("label:nightly label:weekly", False),
        ("date=2024-05-01", True),
        ("date=2024-05-02", False),
        ("country=FR date=2024-05-01", True),
        ("country=FR date=2024-05-02", False),
        ("/data", True),
        ("/data/", True),
        ("/data/load prices", False),  # a bare space splits terms
        ('"/data/load prices"', True),
        ("/dat", False),  # a path prefix is whole folder names
        ("/", True),
        ("r1234", True),  # free text: run id
        ("prices", True),  # free text: job id
        ("fr", True),  # free text: arg values, case-insensitive
        ("2024-05", True),
        ("nothing", False),
        ("prices nothing", False),  # free-text words AND together
        ("foo:bar", False),  # unknown kind: free text "foo:bar"
        ("!state:success", True),
        ("!state:running", False),
        ("!job:load", False),
        ("job:load state:running label:nightly date=2024-05-01 /data r12", True),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_unknown_kind_is_free_text() -> None:
    run = dict(RUN, job_id="foo:bar/x")
    assert parse("foo:bar").terms[0].kind == "text"
    assert matches("foo:bar", run)


def test_term_kinds() -> None:
    kinds = [t.kind for t in parse("job:a state:b label:c d=e /f g").terms]
    assert kinds == ["job", "state", "label", "arg", "path", "text"]


def test_unbalanced_quote_does_not_raise() -> None:
    assert parse('job:"load').terms[0].value == '"load'


def test_empty_kind_value_is_free_text() -> None:
    assert parse("job:").terms[0].kind == "text"


def test_parse_states() -> None:
    assert parse_states("fail,succ") == {"failure", "success"}
    assert parse_states("s") == {"scheduled", "starting", "stopping", "success", "skipped"}
    assert parse_states("finished") == {"success", "failure", "error", "skipped"}
    assert parse_states("") == frozenset()


def test_missing_fields_do_not_raise() -> None:
    bare = {"run_id": "r1", "job_id": "x", "state": "new"}
    for text in ("label:x", "a=b", "text", "job:x", "/x", "state:new"):
        parse(text)(bare)


def test_is_empty() -> None:
    assert parse("").is_empty
    assert not parse("x").is_empty


def test_format_and_add_term() -> None:
    term = format_term("job", "data/load prices")
    assert parse(term).terms[0].value == "data/load prices"
    assert format_term("arg", "FR", name="country") == "country=FR"
    text = add_term("state:running", term)
    assert matches(text)
    assert add_term(text, term) == text  # not added twice
    assert add_term("", "date=x") == "date=x"
