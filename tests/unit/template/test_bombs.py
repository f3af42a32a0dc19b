"""Templates and YAML that would eat the daemon (issue 11.8): each is a clear, quick error."""

from __future__ import annotations

import time

import pytest

from apsis.errors import JobError
from apsis.template import MAX_RENDERED_CHARS, TemplateError, render
from apsis.yamlload import load_yaml


def billion_laughs(levels: int = 9) -> str:
    text = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels + 1):
        text += f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n"
    return text


def test_billion_laughs_is_refused_where_it_is_written():
    with pytest.raises(JobError) as info:
        load_yaml(billion_laughs(), "jobs/.apsis-jobs.yaml")
    assert str(info.value).startswith("jobs/.apsis-jobs.yaml:6:")
    assert "billion laughs" in str(info.value)


def test_ordinary_aliases_and_merges_still_load():
    data = load_yaml("base: &b {x: 1, y: [1, 2]}\nother: {<<: *b, z: 3}\nboth: [*b, *b]\n"
                     "self: &s [1, *s]\n", "f.yaml")
    assert data["other"] == {"z": 3, "x": 1, "y": [1, 2]} and data["both"] == [data["base"]] * 2


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ now.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
])
def test_the_sandbox_refuses_python_internals(template):
    with pytest.raises(TemplateError, match="not allowed in a template|undefined"):
        render(template, {})


@pytest.mark.parametrize("template, message", [
    ("{{ 'x' * 10 ** 9 }}", "a repetition would be more than"),
    ("{{ n ** n }}", "is too large a number"),
    ("{% for i in range(100000) %}{{ big }}{% endfor %}", "the result would be more than"),
    ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
     "rendering takes more than 1 s"),
])
def test_bombs_are_stopped_by_the_budget(template, message):
    started = time.monotonic()
    with pytest.raises(TemplateError, match=message):
        render(template, {"n": 99999, "big": "x" * 1000})
    assert time.monotonic() - started < 3


def test_within_the_budget_templates_render_as_before():
    loop = "{% for x in xs %}{{ loop.index }}/{{ loop.length }}:{{ x|shquote }} {% endfor %}"
    assert render(loop, {"xs": ["a b", "c"]}) == "1/2:'a b' 2/2:c "
    assert render("{{ 'ab' * 3 }}{{ 2 ** 10 }}", {}) == "ababab1024"
    assert len(render("{{ 'x' * n }}", {"n": MAX_RENDERED_CHARS})) == MAX_RENDERED_CHARS
