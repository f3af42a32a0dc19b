"""Programs, conditions, actions and whole job files, parsed strictly with locations."""

import pytest

from apsis.action import RetryAction, ScheduleAction, parse_actions, parse_successors
from apsis.cond import DependencyCondition, parse_conditions
from apsis.errors import Diagnostics, JobError
from apsis.parse_context import ParseContext
from apsis.program import ArgvProgram, NoOpProgram, ShellProgram, parse_program
from apsis.yamlload import load_yaml


def parse(text: str, fn):
    ctx = ParseContext(diags=Diagnostics())
    node = load_yaml(text, "job.yaml")
    value = fn(node["x"], node.loc_of("x"), ctx)
    return value, ctx.diags


def test_bare_string_is_shell_and_list_is_argv():
    prog, _ = parse("x: echo hi\n", parse_program)
    assert isinstance(prog, ShellProgram) and prog.command == "echo hi"
    prog, _ = parse("x: [ls, -l]\n", parse_program)
    assert isinstance(prog, ArgvProgram) and prog.argv == ["ls", "-l"]


def test_shell_program_keys():
    prog, diags = parse(
        "x:\n  type: shell\n  command: sleep 1\n  timeout: {duration: 1h, signal: INT}\n"
        "  stop: {signal: SIGHUP, grace_period: 5s}\n  env: {A: 1}\n  outputs: split\n",
        parse_program)
    assert not diags
    assert prog.timeout == {"duration": 3600.0, "signal": "SIGINT"}
    assert prog.stop == {"signal": "SIGHUP", "grace_period": 5.0}
    assert prog.env == {"A": "1"} and prog.outputs == "split"


def test_unknown_program_key_has_hint_and_location():
    _, diags = parse("x:\n  type: shell\n  command: echo\n  comand: x\n", parse_program)
    [err] = diags.errors
    assert str(err.loc) == "job.yaml:4:3"
    assert "unknown key 'comand'" in err.message and "did you mean 'command'" in err.message


def test_unknown_program_type():
    with pytest.raises(JobError) as exc:
        parse("x:\n  type: shel\n  command: true\n", parse_program)
    assert "did you mean 'shell'" in exc.value.message
    assert str(exc.value.loc) == "job.yaml:2:9"


def test_bad_duration_is_located_at_the_value():
    with pytest.raises(JobError) as exc:
        parse("x:\n  type: no-op\n  duration: forever\n", parse_program)
    assert str(exc.value.loc) == "job.yaml:3:13"
    assert "not a duration" in exc.value.message


def test_noop_success_null_means_error():
    prog, _ = parse("x: {type: no-op, success: null}\n", parse_program)
    assert isinstance(prog, NoOpProgram) and prog.success is None


def test_conditions_collect_every_error():
    conds, diags = parse(
        "x:\n  - {type: dependency, job_id: a, states: [success, done]}\n"
        "  - {type: max_runing}\n  - {type: dependency, job_id: b}\n", parse_conditions)
    assert [type(c) for c in conds] == [DependencyCondition]
    assert len(diags.errors) == 2
    assert "unknown state 'done'" in diags.errors[0].message
    assert "did you mean 'max_running'" in diags.errors[1].message


def test_actions_and_successors():
    actions, diags = parse("x:\n  - {type: retry, count: 3, delay: 1m}\n", parse_actions)
    assert not diags
    [retry] = actions
    assert isinstance(retry, RetryAction) and retry.delay == 60 and retry.if_states == ["failure", "error"]
    succ, _ = parse("x: [report, {job_id: other, args: {a: 1}}]\n", parse_successors)
    assert all(isinstance(a, ScheduleAction) and a.if_states == ["success"] for a in succ)
    assert succ[1].args == {"a": "1"}


def test_command_action_needs_exactly_one_form():
    _, diags = parse("x: {type: command, argv: [a], command: b}\n", parse_actions)
    assert "exactly one of 'argv' or 'command'" in diags.errors[0].message


def test_a_problem_of_a_whole_file_has_no_line_in_json():
    """`check-job --format json`: null, not 0, where a problem has no position (editors and
    CI annotations read 0 as a line)."""
    from apsis.errors import Diagnostic, Location

    whole = Diagnostic(Location("jobs/a.yaml"), "cannot read it").to_jso()
    assert (whole["path"], whole["line"], whole["col"]) == ("jobs/a.yaml", None, None)
    placed = Diagnostic(Location("jobs/a.yaml", 3, 5), "unknown key").to_jso()
    assert (placed["line"], placed["col"]) == (3, 5)
