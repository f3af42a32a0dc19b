"""Loading and checking whole jobs directories: every problem, located, in one pass."""

import datetime as dt
import textwrap
from pathlib import Path

from apsis.check import check_jobs_dir, list_runs
from apsis.jobs_dir import find_jobs_dir, job_id_for, load_jobs_dir
from apsis.lib.timefmt import UTC


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def problems(root: Path) -> list[str]:
    jobs_dir = load_jobs_dir(root, display_root="jobs")
    diags = list(jobs_dir.diags.items) + list(check_jobs_dir(jobs_dir).items)
    return [str(d) for d in diags]


def test_job_ids_come_from_paths(tmp_path):
    write(tmp_path, {"data/load prices.yaml": "program: echo\n", ".hidden/x.yaml": "program: echo\n",
                     ".dot.yaml": "program: echo\n", "notes.txt": "hi"})
    jobs_dir = load_jobs_dir(tmp_path)
    assert sorted(jobs_dir.jobs) == ["data/load prices"]
    assert job_id_for("a/b.yaml") == "a/b"


def test_a_job_keeps_its_file_text_but_not_in_its_json(tmp_path):
    text = "# loads prices\nprogram: echo   # comment kept\n"
    write(tmp_path, {"a.yaml": text})
    job = load_jobs_dir(tmp_path).jobs["a"]
    assert job.source == text
    assert "source" not in job.to_jso()


def test_every_error_of_a_directory_in_one_pass(tmp_path):
    write(tmp_path, {
        "a.yaml": "program: echo\nschedul: {}\n",
        "b.yaml": "params: [x]\nprogram: echo {{ y }}\n",
        "c.yaml": "program: {type: shell, command: echo, timeout: soon}\n",
        "d.yaml": "program: echo\nprogram: echo\n",
    })
    found = problems(tmp_path)
    assert any(p.startswith("jobs/a.yaml:2:1: unknown key 'schedul'") and "did you mean 'schedule'" in p
               for p in found), found
    assert any(p.startswith("jobs/b.yaml:2:10:") and "'y'" in p for p in found), found
    assert any(p.startswith("jobs/c.yaml:1:") and "timeout" in p for p in found), found
    assert any(p.startswith("jobs/d.yaml:2:1: duplicate key 'program'") for p in found), found


def test_dependencies_must_exist_with_matching_params(tmp_path):
    write(tmp_path, {
        "up.yaml": "params: [date]\nprogram: echo {{ date }}\n",
        "down.yaml": """\
            params: [date, region]
            program: echo
            condition:
              - {type: dependency, job_id: up}
              - {type: dependency, job_id: upp}
              - {type: dependency, job_id: up, args: {colour: red}}
            action: {type: schedule, job_id: nowhere}
        """,
    })
    found = problems(tmp_path)
    assert not any("down.yaml:4:" in p for p in found), found  # date is propagated
    assert any("down.yaml:5:" in p and "unknown job 'upp'" in p and "did you mean 'up'" in p
               for p in found), found
    assert any("down.yaml:6:" in p and "colour" in p for p in found), found
    assert any("down.yaml:7:" in p and "unknown job 'nowhere'" in p for p in found), found


def test_dependency_cycles(tmp_path):
    write(tmp_path, {
        "a.yaml": "program: echo\ncondition: {type: dependency, job_id: b}\n",
        "b.yaml": "program: echo\ncondition: {type: dependency, job_id: c}\n",
        "c.yaml": "program: echo\ncondition: {type: dependency, job_id: a}\n",
    })
    found = [p for p in problems(tmp_path) if "cycle" in p]
    assert len(found) == 1 and "a → b → c → a" in found[0]


def test_schedule_must_bind_every_param(tmp_path):
    write(tmp_path, {"a.yaml": """\
        params: [date, country]
        schedule: {type: daily, tz: UTC, daytime: "09:00", args: {colour: red}}
        program: echo {{ date }} {{ country }}
    """})
    found = problems(tmp_path)
    assert any("a.yaml:2:" in p and "does not bind param country" in p for p in found), found
    assert any("warning" in p and "'colour' is not a param" in p for p in found), found


def test_unquoted_arg_in_shell_command_is_a_warning(tmp_path):
    write(tmp_path, {"a.yaml": "params: [x]\nprogram: echo {{ x }}\n"})
    [warning] = problems(tmp_path)
    assert "warning" in warning and "shquote" in warning


def test_templates_rendered_with_expansions_and_calendars(tmp_path):
    write(tmp_path, {
        ".apsis-jobs.yaml": """\
            globals: {root: /srv}
            expand:
              country:
                US: {tz: America/New_York, calendar: "market:NYSE"}
        """,
        "a.yaml": """\
            params: [date, country]
            schedule: {type: daily, tz: America/New_York, calendar: Mon-Fri, daytime: "09:00", args: {country: US}}
            program: "echo {{ root }} {{ tz }} {{ calendar.shift(date, -1)|shquote }} {{ country|shquote }} {{ date|shquote }}"
        """,
    })
    assert problems(tmp_path) == []


def test_config_errors_are_located(tmp_path):
    write(tmp_path, {".apsis-jobs.yaml": "globalz: {}\nhost_groups: {w: {type: round-robinn, hosts: [a]}}\n"})
    found = problems(tmp_path)
    assert any(".apsis-jobs.yaml:1:1: unknown key 'globalz'" in p for p in found), found
    assert any(".apsis-jobs.yaml:2:" in p and "round-robin" in p for p in found), found


def test_find_jobs_dir(tmp_path):
    write(tmp_path, {"jobs/.apsis-jobs.yaml": "", "jobs/a/b.yaml": "program: echo\n"})
    assert find_jobs_dir(tmp_path / "jobs/a/b.yaml") == tmp_path / "jobs"


def test_list_runs_sorted_in_window(tmp_path):
    write(tmp_path, {
        "a.yaml": "params: [date]\nschedule: {type: daily, tz: UTC, daytime: ['12:00', '06:00']}\nprogram: echo\n",
        "b.yaml": "schedule: {type: interval, interval: 8h}\nprogram: echo\n",
    })
    jobs_dir = load_jobs_dir(tmp_path)
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    runs = list_runs(jobs_dir, start, start + dt.timedelta(days=1))
    assert [(r["job_id"], r["time"]) for r in runs] == [
        ("b", "2026-03-01T00:00:00Z"), ("a", "2026-03-01T06:00:00Z"), ("b", "2026-03-01T08:00:00Z"),
        ("a", "2026-03-01T12:00:00Z"), ("b", "2026-03-01T16:00:00Z"),
    ]
    assert runs[1]["args"] == {"date": "2026-03-01"}


def test_demo_jobs_are_clean():
    root = Path(__file__).parents[2] / "jobs"
    found = [p for p in problems(root) if "warning" not in p]
    assert found == []


def test_user_without_host_is_no_warning(tmp_path):
    # It runs on this machine as that user, through sudo (apsis/program/sudo.py).
    write(tmp_path, {"a.yaml": "program: {type: program, argv: [id], user: bob}\n"})
    assert problems(tmp_path) == []


# --- Apsis job files (issue 12) ------------------------------------------------------------

def test_params_as_a_mapping_are_its_keys(tmp_path):
    # Apsis accepts `params` as a mapping; its keys are the params.
    write(tmp_path, {"a.yaml": """\
        params:
          date: {}
          country:
        program: echo {{ date|shquote }} {{ country|shquote }}
        """})
    jobs_dir = load_jobs_dir(tmp_path)
    assert not jobs_dir.diags.items
    assert jobs_dir.jobs["a"].params == ["date", "country"]


def test_yml_files_are_not_jobs_and_are_warned_about(tmp_path):
    write(tmp_path, {"a.yaml": "program: echo\n", "sub/b.yml": "program: echo\n"})
    jobs_dir = load_jobs_dir(tmp_path, display_root="jobs")
    assert sorted(jobs_dir.jobs) == ["a"]
    [warning] = jobs_dir.diags.warnings
    assert str(warning).startswith("jobs/sub/b.yml: warning: not a job") and "b.yaml" in warning.message
    assert not jobs_dir.diags.errors


def test_every_problem_of_a_file_in_one_pass(tmp_path):
    write(tmp_path, {"a.yaml": """\
        params: [date]
        schedule:
          type: daily
          tz: America/New_Yrok
          calendar: Mon-Fry
          daytime: "25:00"
        program:
          type: shell
          command: "echo {{ nosuch }} {{ date|shquote }}"
        """})
    found = problems(tmp_path)
    assert any(p.startswith("jobs/a.yaml:4:7:") and "America/New_Yrok" in p for p in found), found
    assert any(p.startswith("jobs/a.yaml:5:13:") and "Mon-Fry" in p for p in found), found
    assert any(p.startswith("jobs/a.yaml:6:12:") and "25:00" in p for p in found), found
    assert any(p.startswith("jobs/a.yaml:9:12:") and "'nosuch'" in p for p in found), found


def test_a_template_error_points_at_the_template_line(tmp_path):
    write(tmp_path, {"block.yaml": """\
        params: [date]
        program:
          type: shell
          timeout: {duration: 1h}
          command: |
            echo one
            echo {{ date|shquote }}
            echo {{ nosuch }}
        """, "dep.yaml": """\
        program: echo
        condition:
          type: dependency
          job_id: block
          args:
            date: "{{ calendar.shift(dat, -1) }}"
        """, "syntax.yaml": """\
        program:
          type: shell
          command: |
            echo one
            echo {{ date
        """})
    found = problems(tmp_path)
    assert any(p.startswith("jobs/block.yaml:8:5: program: undefined name 'nosuch'") for p in found), found
    assert any(p.startswith("jobs/dep.yaml:6:11: dependency args: undefined name") for p in found), found
    assert any(p.startswith("jobs/syntax.yaml:5:5: program: template syntax error") for p in found), found


def test_unscheduled_jobs_have_no_errors_from_placeholder_args(tmp_path):
    write(tmp_path, {"a.yaml": """\
        params: [n, run_date]
        program: "echo {{ get_calendar('Mon-Fri').shift(run_date, -1)|shquote }}"
        condition:
          type: max_running
          count: "{{ n }}"
        """, "b.yaml": """\
        params: [n]
        program: "echo {{ nosuch }} {{ n|shquote }}"
        """})
    found = problems(tmp_path)
    assert [p for p in found if "a.yaml" in p] == []
    # A real mistake is still found.
    assert any(p.startswith("jobs/b.yaml:") and "'nosuch'" in p for p in found), found


def test_jobs_of_one_pattern_share_their_parts_but_not_their_locations(tmp_path):
    """Equal parts are parsed once for the whole directory; what each file got wrong is
    still reported at its own lines, and the same mistake in every file is reported in
    every file."""
    part = textwrap.dedent("""\
        schedule:
          type: daily
          tz: America/New_York
          daytime: "{daytime}"
        program:
          type: shell
          command: "echo {{{{ nosuch }}}}"
        condition: {{type: dependency, job_id: nosuchjob}}
        """)
    write(tmp_path, {"a.yaml": part.format(daytime="09:00"),
                     "b.yaml": "metadata: {description: two lines more}\n\n" + part.format(daytime="09:00"),
                     "bad1.yaml": part.format(daytime="25:00"),
                     "bad2.yaml": "\n" + part.format(daytime="25:00")})
    jobs_dir = load_jobs_dir(tmp_path, display_root="jobs")
    a, b = jobs_dir.jobs["a"], jobs_dir.jobs["b"]
    assert a.program is b.program and a.schedules[0] is b.schedules[0]
    assert a.conditions[0] is b.conditions[0]
    found = [str(d) for d in [*jobs_dir.diags.items, *check_jobs_dir(jobs_dir).items]]
    assert any(p.startswith("jobs/a.yaml:7:12: program: undefined name 'nosuch'") for p in found), found
    assert any(p.startswith("jobs/b.yaml:9:12: program: undefined name 'nosuch'") for p in found), found
    assert any(p.startswith("jobs/a.yaml:8:12: dependency on unknown job 'nosuchjob'") for p in found), found
    assert any(p.startswith("jobs/b.yaml:10:12: dependency on unknown job 'nosuchjob'") for p in found), found
    assert any(p.startswith("jobs/bad1.yaml:4:12:") and "25:00" in p for p in found), found
    assert any(p.startswith("jobs/bad2.yaml:5:12:") and "25:00" in p for p in found), found
    assert sorted(jobs_dir.broken) == ["bad1", "bad2"]


def test_parts_written_with_aliases_parse_as_written(tmp_path):
    write(tmp_path, {"a.yaml": """\
        params: [x]
        schedule:
          - &every {type: interval, interval: 1h, args: {x: one}}
          - {<<: *every, args: {x: two}}
        program: {type: shell, command: "echo {{ x|shquote }}"}
        """, "b.yaml": """\
        params: [x]
        schedule:
          - {type: interval, interval: 1h, args: {x: one}}
          - {type: interval, interval: 1h, args: {x: two}}
        program: {type: shell, command: "echo {{ x|shquote }}"}
        """})
    jobs_dir = load_jobs_dir(tmp_path)
    assert [s.to_jso() for s in jobs_dir.jobs["a"].schedules] == \
        [s.to_jso() for s in jobs_dir.jobs["b"].schedules]
    assert [s.args for s in jobs_dir.jobs["a"].schedules] == [{"x": "one"}, {"x": "two"}]


def test_job_files_are_read_as_text_files_are(tmp_path):
    (tmp_path / "crlf.yaml").write_bytes(b"params: [x]\r\nprogram: echo {{ y }}\r\n")
    (tmp_path / "latin1.yaml").write_bytes(b"program: echo caf\xe9\n")
    jobs_dir = load_jobs_dir(tmp_path, display_root="jobs")
    assert jobs_dir.jobs["crlf"].source == "params: [x]\nprogram: echo {{ y }}\n"
    found = [str(d) for d in [*jobs_dir.diags.items, *check_jobs_dir(jobs_dir).items]]
    assert "jobs/latin1.yaml: not UTF-8 text: invalid continuation byte at byte 17" in found, found
    assert any(p.startswith("jobs/crlf.yaml:2:10:") and "'y'" in p for p in found), found


def test_symlinks_may_not_take_a_job_outside_the_jobs_directory(tmp_path):
    root, outside = tmp_path / "jobs", tmp_path / "elsewhere"
    write(root, {"real/a.yaml": "program: echo a\n"})
    write(outside, {"b.yaml": "program: echo b\n"})
    (root / "alias").symlink_to(root / "real")
    (root / "linked.yaml").symlink_to(root / "real" / "a.yaml")
    (root / "away").symlink_to(outside)
    jobs_dir = load_jobs_dir(root, display_root="jobs")
    assert sorted(jobs_dir.jobs) == ["linked", "real/a"]  # os.walk does not follow folder links
    jobs_dir = load_jobs_dir(root, display_root="jobs", only=[root / "alias" / "a.yaml", root / "away" / "b.yaml"])
    assert sorted(jobs_dir.jobs) == ["alias/a"]
    assert [str(d) for d in jobs_dir.diags.items] == [
        f"jobs/away/b.yaml: refused: a symlink to {outside.resolve() / 'b.yaml'}, outside the jobs "
        "directory; copy the file in, or link to a file inside"]
