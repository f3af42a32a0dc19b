"""SPEC Part 1 pinned through the real `apsis` and `apsisctl` executables: the flags of
§1.4/§1.5 spelled as the SPEC spells them, what the run-creating commands print, the
default `runs` limit, ARG=VAL for any param name, and check-job's paths, DST listing,
`expand` and hints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import httpx

from apsis_cli.apsis import cli as apsis_cli
from apsis_cli.apsisctl import cli as apsisctl_cli

from .helpers import apsis, apsisctl

JOBS = {
    "ok": "program: [\"true\"]\n",
    "fail": "program: [sh, -c, 'exit 3']\n",
    "noop": "program: {type: no-op}\n",
    "dashed": "params: [load-date]\nprogram: [sh, -c, 'echo \"$APSIS_ARG_LOAD_DATE\"']\n",
    "daily": ("params: [date]\n"
              "schedule: {type: daily, tz: UTC, daytime: '09:00'}\n"
              "program: [\"true\"]\n"),
    "split": "program: {type: program, argv: [sleep, '3'], outputs: split}\n",
}


# ------------------------------------------------------------------ §1.4, §1.5 flags

APSIS_FLAGS = {
    "jobs": {"--label", "--json"},
    "job": {"--next", "--json"},
    "runs": {"-j", "-s", "--since", "--until", "--times", "--limit", "--follow", "--all",
             "--json"},
    "show": {"--json"},
    "run": {"--at", "--count", "--stop", "--wait", "--output", "--json"},
    "schedule": {"--json"},
    "adhoc": {"--at", "--wait", "--output", "--json"},
    "wait": {"--timeout", "--quiet", "--json"},
    "output": {"--output-id", "-f", "--follow", "--wait", "--tail"},
    "log": {"-f", "--json"},
    "skip": set(), "start": set(), "stop": set(), "rerun": {"--json"},
    "signal": set(), "mark": set(),
    "backfill": {"--from", "--to", "--dry-run", "--max-parallel", "--json"},
    "events": {"--since", "--type"},
    "tui": set(),
}
APSISCTL_FLAGS = {
    ("serve",): {"--config", "--jobs", "--db", "--bind", "--since", "--insecure"},
    ("check-job",): {"--format", "--list-runs", "--from", "--to"},
    ("schema",): set(),
    ("reload",): {"--dry-run"},
    ("sanity",): set(),
    ("db", "migrate"): set(), ("db", "check"): set(), ("db", "vacuum"): set(),
    ("db", "archive"): {"--older-than"},
    ("shutdown",): {"--restart"},
    ("version",): set(),
}


def _opts(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_every_spec_flag_exists():
    assert _opts(apsis_cli) >= {"--url", "--token"}
    for name, flags in APSIS_FLAGS.items():
        assert name in apsis_cli.commands, name
        missing = flags - _opts(apsis_cli.commands[name])
        assert not missing, f"apsis {name} lacks {missing}"
    for path, flags in APSISCTL_FLAGS.items():
        command = apsisctl_cli
        for part in path:
            command = command.commands[part]  # type: ignore[attr-defined]
        missing = flags - _opts(command)
        assert not missing, f"apsisctl {' '.join(path)} lacks {missing}"
    formats = next(p for p in apsisctl_cli.commands["check-job"].params if p.name == "fmt")
    assert set(formats.type.choices) == {"text", "json", "github"}


def test_url_option(daemon):
    result = apsis(None, "--url", daemon.url, "jobs", "--json")
    assert result.returncode == 0 and {j["job_id"] for j in json.loads(result.stdout)} >= set(JOBS)


# ------------------------------------------------------------------ creating runs

def _ids(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    ids = result.stdout.splitlines()
    assert ids and all(i.startswith("r") and i[1:].isdigit() for i in ids), result.stdout
    return ids


def _json_runs(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)  # one JSON document
    assert isinstance(runs, list) and runs and all("run_id" in r for r in runs)
    return runs


def test_creating_commands_print_ids_one_a_line_or_json_runs(url):
    assert len(_ids(apsis(url, "run", "noop", "--count", "2"))) == 2
    assert len(_ids(apsis(url, "schedule", "+1h", "noop"))) == 1
    first = _ids(apsis(url, "adhoc", "--", "true"))[0]
    assert len(_ids(apsis(url, "rerun", first))) == 1
    window = ["--from", "2026-01-01", "--to", "2026-01-03"]
    assert len(_ids(apsis(url, "backfill", "daily", *window))) == 2

    assert len(_json_runs(apsis(url, "run", "noop", "--count", "2", "--json"))) == 2
    assert _json_runs(apsis(url, "schedule", "+1h", "noop", "--json"))[0]["job_id"] == "noop"
    adhoc = _json_runs(apsis(url, "adhoc", "--json", "--", "true"))[0]
    assert adhoc["ad_hoc"] is True and "ad-hoc" in adhoc["labels"]
    assert _json_runs(apsis(url, "rerun", first, "--json"))[0]["rerun_of"] == first
    backfilled = _json_runs(apsis(url, "backfill", "daily", *window, "--json"))
    assert [r["args"]["date"] for r in backfilled] == ["2026-01-01", "2026-01-02"]


def test_an_ad_hoc_job_is_a_job_too(url):
    job_id = _json_runs(apsis(url, "adhoc", "--json", "--", "true"))[0]["job_id"]
    shown = apsis(url, "job", job_id)  # it asked for a schedule the daemon did not have
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(job_id) and "next runs: none scheduled" in shown.stdout
    assert apsis(url, "run", job_id, "--wait").returncode == 0


def test_schedule_is_run_at_time(url):
    # `apsis schedule TIME JOB` is `apsis run JOB --at TIME`, --wait included.
    assert apsis(url, "schedule", "now", "fail", "--wait").returncode == 1
    assert apsis(url, "schedule", "now", "ok", "--wait").returncode == 0


def test_args_of_any_param_name(url):
    result = apsis(url, "run", "dashed", "load-date=2026-12-01", "--wait", "--output")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2026-12-01"
    assert json.loads(apsis(url, "runs", "-j", "dashed", "load-date=2026-12-01",
                            "--json").stdout)[0]["args"] == {"load-date": "2026-12-01"}


def test_runs_shows_the_newest_100_unless_limit_or_all(url):
    response = httpx.post(f"{url}/api/v1/runs", json={"job_id": "noop", "count": 105,
                                                      "times": {"schedule": "+1d"}}, timeout=30)
    assert response.status_code == 201, response.text
    ours = {r["run_id"] for r in response.json()["runs"]}
    base = ["runs", "-j", "noop", "--since", "-1h", "--until", "+2d", "--json"]
    shown = json.loads(apsis(url, *base).stdout)
    assert len(shown) == 100
    assert len(json.loads(apsis(url, *base, "--limit", "3").stdout)) == 3
    everything = {r["run_id"] for r in json.loads(apsis(url, *base, "--all").stdout)}
    assert everything >= ours and len(everything) > 100


def test_output_follow_of_an_output_the_running_run_lacks_exits_2_at_once(url):
    # It used to wait in silence for the run to end, then exit 0 with nothing printed.
    run_id = _ids(apsis(url, "run", "split"))[0]
    started = time.monotonic()
    result = apsis(url, "output", run_id, "-f", "--output-id", "output")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert f"run {run_id} has no output 'output'" in result.stderr
    assert "stdout, stderr" in result.stderr
    assert time.monotonic() - started < 2.5  # told at once, not when the run ends
    assert apsis(url, "wait", run_id).returncode == 0


def test_a_request_the_daemon_refuses_is_one_line_with_a_hint(url):
    run_id = _ids(apsis(url, "run", "noop", "--at", "+1h"))[0]
    for args, command in [(["signal", "BOGUS", run_id], "apsis signal"),
                          (["run", "noop", "--at", "+2h", "--stop", "+1h"], "apsis run")]:
        result = apsis(url, *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ")
        assert result.stderr.rstrip().endswith(f"(hint: see '{command} --help')"), result.stderr


# ------------------------------------------------------------------ check-job

def _jobs_dir(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_check_job_names_files_as_given(tmp_path):
    _jobs_dir(tmp_path, {"jobs/sub/bad.yaml": "program: {type: no-op}\nschedul: {}\n",
                         "jobs/ok.yaml": "program: {type: no-op}\n"})
    cwd = {"cwd": tmp_path}
    for given, shown in [("jobs", "jobs/sub/bad.yaml"), ("jobs/", "jobs/sub/bad.yaml"),
                         ("./jobs", "./jobs/sub/bad.yaml"),
                         ("./jobs/sub/bad.yaml", "./jobs/sub/bad.yaml"),
                         ("jobs/sub/bad.yaml", "jobs/sub/bad.yaml"),
                         (str(tmp_path / "jobs"), str(tmp_path / "jobs/sub/bad.yaml"))]:
        result = apsisctl(None, "check-job", given, **cwd)
        assert result.returncode == 1
        assert result.stdout.splitlines()[0].startswith(f"{shown}:2:1: unknown key 'schedul'"), \
            (given, result.stdout)
        assert "did you mean 'schedule'" in result.stdout
    # In its jobs dir (the nearest .apsis-jobs.yaml), a file keeps the name it was given.
    (tmp_path / "jobs/.apsis-jobs.yaml").write_text("globals: {}\n")
    inside = apsisctl(None, "check-job", "bad.yaml", cwd=tmp_path / "jobs/sub")
    assert inside.stdout.startswith("bad.yaml:2:1:"), inside.stdout
    assert apsisctl(None, "check-job", "jobs/ok.yaml", **cwd).returncode == 0
    assert apsisctl(None, "check-job", "--format", "xml", "jobs", **cwd).returncode == 2


def test_check_job_hints_a_typo_for_a_required_key(tmp_path):
    _jobs_dir(tmp_path, {"jobs/a.yaml": "program: {type: shell, comand: 'true'}\n"})
    result = apsisctl(None, "check-job", "jobs", cwd=tmp_path)
    assert result.returncode == 1
    assert "'comand'" in result.stdout and "did you mean 'command'" in result.stdout
    # In file order: the mapping missing the key, then the misspelt key with its hint.
    assert result.stdout.splitlines()[0].startswith("jobs/a.yaml:1:10: program needs 'command'")
    assert result.stdout.splitlines()[1].startswith("jobs/a.yaml:1:24: unknown key 'comand'")


EXPAND = """\
expand:
  country:
    US: {tz: America/New_York, calendar: market:NYSE}
    GB: {tz: Europe/London, calendar: "holidays:GB"}
"""


def test_check_job_renders_unscheduled_jobs_with_their_expansions(tmp_path):
    _jobs_dir(tmp_path, {
        "jobs/.apsis-jobs.yaml": EXPAND,
        "jobs/load.yaml": (
            "params: [date, country]\n"
            "program: {type: shell, command: 'echo {{ tz|shquote }} "
            "{{ calendar.shift(date, -1)|shquote }}'}\n"),
    })
    clean = apsisctl(None, "check-job", "jobs", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout
    # A value whose expansion lacks `calendar` is found.
    (tmp_path / "jobs/.apsis-jobs.yaml").write_text(EXPAND + "    FR: {tz: Europe/Paris}\n")
    broken = apsisctl(None, "check-job", "jobs", cwd=tmp_path)
    assert broken.returncode == 1 and "calendar" in broken.stdout and "FR" in broken.stdout


DST_JOBS = {
    "gap": "schedule: {type: daily, tz: America/New_York, daytime: '02:30'}\n",
    "gap-cron": "schedule: {type: cron, tz: America/New_York, expr: '30 2 * * *'}\n",
    "gap-shift": ("schedule: {type: daily, tz: America/New_York, daytime: '02:30', "
                  "dst_gap: shift}\n"),
    "gap-skip": ("schedule: {type: daily, tz: America/New_York, daytime: '02:30', "
                 "dst_gap: skip}\n"),
    "fold": "schedule: {type: daily, tz: America/New_York, daytime: '01:30'}\n",
    "fold-cron": "schedule: {type: cron, tz: America/New_York, expr: '30 1 * * *'}\n",
    "fold-second": ("schedule: {type: daily, tz: America/New_York, daytime: '01:30', "
                    "dst_fold: second}\n"),
}


def _list_runs(tmp_path: Path, start: str, stop: str) -> dict[str, list[str]]:
    result = apsisctl(None, "check-job", "jobs", "--list-runs", "--from", start, "--to", stop,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["time"] for r in lines] == sorted(r["time"] for r in lines)
    assert all(set(r) == {"job_id", "args", "time"} and r["time"].endswith("Z") for r in lines)
    runs: dict[str, list[str]] = {}
    for r in lines:
        runs.setdefault(r["job_id"], []).append(r["time"])
    return runs


def test_dst_rule_in_listed_runs(tmp_path):
    _jobs_dir(tmp_path, {f"jobs/{name}.yaml": text + "program: {type: no-op}\n"
                         for name, text in DST_JOBS.items()})
    spring = _list_runs(tmp_path, "2026-03-08", "2026-03-09")  # 02:00 → 03:00 in New York
    assert spring["gap"] == spring["gap-cron"] == ["2026-03-08T07:00:00Z"]  # 03:00 EDT
    assert spring["gap-shift"] == ["2026-03-08T07:30:00Z"]  # 03:30 EDT
    assert "gap-skip" not in spring
    assert spring["fold"] == ["2026-03-08T06:30:00Z"]  # an ordinary day: 01:30 EST
    autumn = _list_runs(tmp_path, "2026-11-01", "2026-11-02")  # 02:00 → 01:00
    assert autumn["fold"] == autumn["fold-cron"] == ["2026-11-01T05:30:00Z"]  # 01:30 EDT, once
    assert autumn["fold-second"] == ["2026-11-01T06:30:00Z"]  # 01:30 EST
    assert autumn["gap"] == ["2026-11-01T07:30:00Z"]


def test_list_runs_of_a_file_lists_that_file_s_runs(tmp_path):
    daily = "schedule: {type: daily, tz: UTC, daytime: '09:00'}\nprogram: {type: no-op}\n"
    _jobs_dir(tmp_path, {"jobs/a.yaml": daily, "jobs/sub/b.yaml": daily, "jobs/c.yaml": daily,
                         "jobs/.apsis-jobs.yaml": "globals: {}\n"})
    window = ["--list-runs", "--from", "2026-01-01", "--to", "2026-01-02"]
    for given, listed in [(["jobs/a.yaml"], ["a"]), (["jobs/sub/b.yaml", "jobs/c.yaml"], ["c", "sub/b"]),
                          (["jobs"], ["a", "c", "sub/b"])]:
        result = apsisctl(None, "check-job", *given, *window, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["job_id"] for line in result.stdout.splitlines()] == listed


def test_check_job_says_a_file_given_is_no_job(tmp_path):
    _jobs_dir(tmp_path, {"jobs/.off.yaml": "program: {type: no-op}\n", "jobs/notes.txt": "x\n",
                         "jobs/.apsis-jobs.yaml": "calendars: {c: {weekdays: Bogus}}\n"})
    result = apsisctl(None, "check-job", "jobs/.off.yaml", "jobs/notes.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "jobs/.off.yaml: warning: not a job: names starting with '.' are not jobs",
        "jobs/notes.txt: warning: not a job: only .yaml files are jobs"]
    assert "0 jobs checked" in result.stderr
    # The jobs dir's own config, given by name (a pre-commit hook does), is checked.
    config = apsisctl(None, "check-job", "jobs/.apsis-jobs.yaml", cwd=tmp_path)
    assert config.returncode == 1 and "jobs/.apsis-jobs.yaml:1:" in config.stdout


def test_bad_times_and_usage_exit_2(tmp_path):
    _jobs_dir(tmp_path, {"jobs/a.yaml": "program: {type: no-op}\n"})
    assert apsisctl(None, "check-job", cwd=tmp_path).returncode == 2
    assert apsisctl(None, "check-job", "nosuch", cwd=tmp_path).returncode == 2
    bad = apsisctl(None, "check-job", "jobs", "--list-runs", "--from", "yesterday-ish",
                   cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_db_migrate_into_no_folder_is_a_user_error(tmp_path):
    result = apsisctl(None, "db", "migrate", "--db", str(tmp_path / "nowhere/apsis.db"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"no folder {tmp_path / 'nowhere'} for apsis.db" in result.stderr


# ------------------------------------------------------------------ apsisctl schema

FORMS = {  # SPEC §1.2 forms, each a clean job for check-job
    "params-mapping": "params: {date: {}, country: {}}\nprogram: {type: no-op}\n",
    "params-string": "params: date\nprogram: echo {{ date|shquote }}\n",
    "daily-interval": (
        "params: [date]\n"
        "schedule: {type: daily-interval, tz: UTC, start: {daytime: '09:00', date_shift: -1, "
        "cal_shift: 0}, stop: '17:00', interval: 1.5h, calendar: Mon-Fri}\n"
        "program: {type: no-op}\n"),
    "exist-states": ("params: [date]\nprogram: {type: no-op}\n"
                     "condition: {type: dependency, job_id: params-string, exist: [running, success]}\n"),
    "extension": "program: {type: apsis.program.noop.NoOpProgram}\n",
    "spec-example": """\
params: [date, country]
metadata: {description: "Loads prices.", labels: [prices, daily]}
schedule:
  - {type: daily, tz: America/New_York, calendar: Mon-Fri, daytime: ["09:30", "16:00:00"],
     args: {country: US}, jitter: 30s}
program:
  type: shell
  command: "load-prices --date {{ date|shquote }} --tz {{ tz|shquote }}"
  timeout: {duration: 1h, signal: SIGTERM}
condition:
  - {type: dependency, job_id: params-mapping, args: {date: "{{ date }}"}}
action:
  - {type: retry, count: 3, delay: 1m, if: {states: [failure, error]}}
successors: params-mapping
""",
}


def test_the_schema_takes_every_form_check_job_takes(tmp_path):
    import jsonschema
    import yaml

    _jobs_dir(tmp_path, {f"jobs/{name}.yaml": text for name, text in FORMS.items()})
    (tmp_path / "jobs/.apsis-jobs.yaml").write_text(
        "expand:\n  country:\n    US: {tz: America/New_York}\n")
    checked = apsisctl(None, "check-job", "jobs", cwd=tmp_path)
    assert checked.returncode == 0 and not checked.stdout, checked.stdout
    validator = jsonschema.Draft202012Validator(json.loads(apsisctl(None, "schema").stdout))
    for name, text in FORMS.items():
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(text))]
        assert not errors, (name, errors)
