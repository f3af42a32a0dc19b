"""Issue 13's CLI items against a real daemon: event filters that reject what cannot
match, abbreviated job names shown as written, folders as run filters, `--all`,
one JSON shape, completion of recent runs, and the command-line conventions."""

from __future__ import annotations

import json
import subprocess
import time



from .helpers import APSIS, APSISCTL, apsis, env_for, on_terminal, one_run, popen

JOBS = {
    "market/load-prices": "# Prices of one trading day.\nparams: [date]\nprogram: 'true'\n",
    "ops/ok": "program: 'true'\n",
    "ops/bad": "program: 'false'\n",
    "ops/slow": "program: 'sleep 3'\n",
    "sched/hourly": "params: [date, time]\nschedule: {type: interval, interval: 1h}\n"
                    "program: 'true'\n",
    # Fails twice, then succeeds: each attempt counts the files in its directory.
    "ops/flaky": ("params: [dir]\n"
                  "program: 'mkdir -p {{ dir }} && touch {{ dir }}/$$ && "
                  "test $(ls {{ dir }} | wc -l) -ge 3'\n"
                  "action: {type: retry, count: 3, delay: 0.5}\n"),
}


def _first_line(proc: subprocess.Popen, timeout: float = 15) -> bytes:
    """The first line `proc` prints, then stop it."""
    import select

    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        assert ready, "nothing printed"
        return proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------ 14: events filters

def test_events_filters_reject_what_cannot_match(url):
    for args, words in ((["-t", "bogus_type"], "unknown event type 'bogus_type'"),
                        (["-j", "nosuch/job"], "no job matches 'nosuch/job'"),
                        (["-r", "r999999"], "r999999")):
        result = apsis(url, "events", *args, timeout=20)
        assert result.returncode == 2, (args, result)
        assert words in result.stderr and result.stdout == "", (args, result.stderr)


def test_events_job_filter_takes_an_abbreviation(url):
    one_run(apsis(url, "run", "market/load-prices", "date=2026-12-01"))
    proc = popen(url, "events", "--since", "0", "-j", "mar/lo", "-t", "run_transition")
    event = json.loads(_first_line(proc))
    assert event["run"]["job_id"] == "market/load-prices", event


# ------------------------------------------------------------------ 17: waiting

def test_wait_shows_a_status_line_on_a_terminal_only(url):
    run_id = one_run(apsis(url, "run", "ops/slow"))
    code, shown = on_terminal(["wait", run_id], env_for(url, TERM="xterm", NO_COLOR="1"),
                              stdout=False)
    assert code == 0
    assert f"waiting 0:00:01: {run_id} running".encode() in shown, shown
    assert b" ?" not in shown, shown
    assert shown.rstrip().endswith(f"{run_id} success".encode()), shown
    piped = apsis(url, "wait", one_run(apsis(url, "run", "ops/slow")))
    assert piped.returncode == 0 and "\r" not in piped.stderr and "waiting" not in piped.stderr


def test_a_failure_names_its_scheduled_retry(url, tmp_path):
    result = apsis(url, "run", "ops/flaky", f"dir={tmp_path / 'once'}", "--wait")
    assert result.returncode == 1, result
    first = result.stdout.strip()
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{first} failure"), lines
    assert lines[1].startswith(f"{first} failure: retry r"), lines
    assert "scheduled at " in lines[1] and lines[1].endswith("(attempt 2)"), lines


def test_follow_retries_waits_for_the_last_attempt(url, tmp_path):
    result = apsis(url, "run", "ops/flaky", f"dir={tmp_path / 'all'}", "--follow-retries")
    assert result.returncode == 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 5 and lines[-1].endswith(" success"), lines
    assert "retry" in lines[1] and "(attempt 3)" in lines[3], lines


# ------------------------------------------------------------------ 12: job, abbreviated

def test_an_abbreviated_job_is_shown_as_the_exact_one(url):
    exact = apsis(url, "job", "market/load-prices")
    short = apsis(url, "job", "mar/lo")
    assert exact.returncode == short.returncode == 0, short.stderr
    assert "# Prices of one trading day." in exact.stdout
    assert short.stdout == exact.stdout
    as_json = json.loads(apsis(url, "job", "mar/lo", "--json").stdout)
    assert as_json["source"].startswith("# Prices of one trading day.")


# ------------------------------------------------------------------ 18: folders as filters

def test_runs_of_a_folder(url):
    ok = apsis(url, "run", "ops/ok", "--wait").stdout.strip()
    bad = apsis(url, "run", "ops/bad", "--wait").stdout.strip()
    market = one_run(apsis(url, "run", "market/load-prices", "date=2026-12-02"))
    for args in (["ops/"], ["/ops"], ["-j", "ops/"], ["ops"]):
        shown = apsis(url, "runs", *args)
        assert shown.returncode == 0, (args, shown.stderr)
        ids = {line.split()[0] for line in shown.stdout.splitlines()}
        assert {ok, bad} <= ids and market not in ids, (args, shown.stdout)
        assert all(" ops/" in line for line in shown.stdout.splitlines()), shown.stdout
    limited = apsis(url, "runs", "ops/", "--limit", "1").stdout.split()
    assert limited[0] == bad, limited
    every = apsis(url, "runs", "-j", "market/", "--all").stdout
    assert market in every and ok not in every
    none = apsis(url, "runs", "nosuch/")
    assert none.returncode == 2 and "no job in folder 'nosuch'" in none.stderr


# ------------------------------------------------------------------ 20: --all, examples

def test_runs_all_means_all_even_the_future(url):
    later = one_run(apsis(url, "run", "ops/ok", "--at", "+3h"))
    assert later not in apsis(url, "runs").stdout  # the default: until an hour from now
    assert later in apsis(url, "runs", "--all").stdout
    assert later in apsis(url, "runs", "--all", "--json").stdout


def _example_job_ids(text: str) -> list[str]:
    """The job ids the `apsis ...` example lines of a help or doc text name."""
    import re
    import shlex

    ids = []
    for line in re.findall(r"^\s*(apsis (?:run|job|jobs|schedule|backfill|runs)\b.*)$", text, re.M):
        words = shlex.split(line.split("#")[0].split("|")[0])
        for i, word in enumerate(words[1:], 1):
            if words[i - 1] in ("-j", "--job") or (i == 2 and words[1] not in ("runs", "schedule")) or (
                    i == 3 and words[1] == "schedule"):
                if not word.startswith("-") and "=" not in word:
                    ids.append(word)
    return ids


def test_examples_name_the_demo_jobs():
    from pathlib import Path

    from apsis_cli.fuzzy import fuzzy_candidates

    root = Path(__file__).parents[2]
    demo = [str(p.relative_to(root / "jobs").with_suffix("")) for p in (root / "jobs").rglob("*.yaml")
            if not p.name.startswith(".")]
    texts = {"docs/cli.md": (root / "docs/cli.md").read_text()}
    for command in ("", "jobs", "job", "runs", "run", "schedule", "backfill"):
        texts[f"apsis {command} --help"] = apsis(None, *command.split(), "--help").stdout
    named = {(where, i) for where, text in texts.items() for i in _example_job_ids(text)}
    assert len(named) > 10, named
    for where, typed in named:
        glob = typed.rstrip("*")
        ok = (any(j.startswith(glob) for j in demo) if typed.endswith(("/", "*"))
              else typed in demo or len(fuzzy_candidates(typed, demo)) == 1)
        assert ok, f"{where}: {typed!r} is not a demo job ({', '.join(sorted(demo))})"


# ------------------------------------------------------------------ 16: --json

def test_backfill_dry_run_json_is_one_document(url):
    result = apsis(url, "backfill", "sched/hourly", "--from", "-3h", "--to", "now", "--dry-run",
                   "--json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert isinstance(planned, list) and len(planned) == 3, planned
    assert {p["job_id"] for p in planned} == {"sched/hourly"}


def test_help_mentions_follow_only_where_there_is_one():
    for command in ("show", "jobs", "job", "run", "wait", "skip", "backfill"):
        assert "--follow" not in apsis(None, command, "--help").stdout.replace(
            "--follow-retries", ""), command
    for command in ("runs", "log"):
        assert "JSON Lines with --follow" in apsis(None, command, "--help").stdout, command


def test_runs_follow_json_has_one_shape(url):
    apsis(url, "run", "ops/ok", "--wait")
    proc = popen(url, "runs", "--follow", "--json", "-j", "ops/ok", "--limit", "1")
    try:
        first = json.loads(_readline(proc))
        later = one_run(apsis(url, "run", "ops/ok"))
        changed = json.loads(_readline(proc))
        assert changed["run_id"] == later
        assert set(first) == set(changed), (sorted(first), sorted(changed))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _readline(proc: subprocess.Popen, timeout: float = 15) -> bytes:
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "nothing printed"
    return proc.stdout.readline()


# ------------------------------------------------------------------ 13: completion

def test_run_completion_offers_running_then_recent_runs_not_tomorrows(url):
    done = one_run(apsis(url, "run", "ops/ok"))
    apsis(url, "wait", done)
    running = one_run(apsis(url, "run", "ops/slow"))
    future = json.loads(apsis(url, "runs", "-j", "sched/hourly", "--all", "--json").stdout)
    assert len(future) > 20  # a day of hourly runs, scheduled ahead
    env = env_for(url, _APSIS_COMPLETE="bash_complete", COMP_WORDS="apsis show ", COMP_CWORD="2")
    result = subprocess.run([APSIS], env=env, capture_output=True, text=True, timeout=20,
                            check=False)
    offered = [line.split(",", 1)[1] for line in result.stdout.splitlines()]
    assert offered[0] == running, offered[:5]
    assert done in offered[:10], offered[:10]
    tomorrow = {r["run_id"] for r in future if r["state"] == "scheduled"}
    assert not tomorrow & set(offered[:10]), offered[:10]
    apsis(url, "wait", running)


# ------------------------------------------------------------------ 19: conventions

def test_color_always_never_and_force_color(url):
    apsis(url, "run", "ops/ok", "--wait")
    assert "\x1b[" in apsis(url, "--color", "always", "runs").stdout
    assert "\x1b[" in apsis(url, "runs", env=env_for(url, FORCE_COLOR="1")).stdout
    assert "\x1b[" in apsis(url, "runs", env=env_for(url, CLICOLOR_FORCE="1")).stdout
    assert "\x1b[" not in apsis(url, "runs", env=env_for(url, CLICOLOR_FORCE="0")).stdout
    assert "\x1b[" not in apsis(url, "--color", "never", "runs",
                                env=env_for(url, FORCE_COLOR="1")).stdout
    assert "\x1b[" not in apsis(url, "runs", env=env_for(url, NO_COLOR="1", FORCE_COLOR="1")).stdout


def test_completion_scripts():
    for shell, marker in (("bash", "complete -o nosort -F _apsis_completion apsis"),
                          ("zsh", "compdef _apsis_completion apsis"),
                          ("fish", "complete --no-files --command apsis")):
        result = apsis(None, "completion", shell)
        assert result.returncode == 0 and marker in result.stdout, (shell, result.stdout[-300:])
    assert apsis(None, "completion", "tcsh").returncode == 2


def test_a_pager_for_long_output_on_a_terminal(url):
    run_id = one_run(apsis(url, "run", "ops/ok"))
    apsis(url, "wait", run_id)
    env = env_for(url, TERM="xterm", NO_COLOR="1", PAGER="sed 's/^/paged: /'")
    assert b"paged: run " in on_terminal(["show", run_id], env, rows=5)[1]
    assert b"paged:" not in on_terminal(["show", run_id], env, rows=60)[1]  # it fits
    assert b"paged:" not in on_terminal(["--no-pager", "show", run_id], env, rows=5)[1]
    assert b"paged: market/load-prices" in on_terminal(["job", "mar/lo"], env, rows=5)[1]
    piped = apsis(url, "show", run_id, env=env)
    assert "paged:" not in piped.stdout and run_id in piped.stdout


def test_short_options_mean_one_thing(url):
    assert apsis(url, "job", "mar/lo", "-n", "0", "--json").returncode == 0
    assert json.loads(apsis(url, "job", "mar/lo", "--limit", "0", "--json").stdout)["next_runs"] == []
    assert json.loads(apsis(url, "job", "mar/lo", "--next", "0", "--json").stdout)["next_runs"] == []
    assert "-t, --times" in apsis(None, "runs", "--help").stdout
    events_help = apsis(None, "events", "--help").stdout
    assert "-t" not in events_help.replace("--", "") and "--type" in events_help
    old = apsis(url, "events", "-t", "bogus")  # the old spelling still reaches --type
    assert old.returncode == 2 and "unknown event type 'bogus'" in old.stderr


def test_apsisctl_version_and_global_options(url):
    from importlib.metadata import version

    assert apsis(None, "--version", exe=APSISCTL).stdout.strip() == f"apsisctl {version('apsis')}"
    before = subprocess.run([APSISCTL, "--url", url, "sanity", "--json"], env=env_for(None),
                            capture_output=True, text=True, timeout=30, check=False)
    assert before.returncode in (0, 1) and isinstance(json.loads(before.stdout), list), before
    unreachable = subprocess.run([APSISCTL, "--url", "http://127.0.0.1:9", "--retry-for", "0",
                                  "sanity"], env=env_for(None), capture_output=True, text=True,
                                 timeout=30, check=False)
    assert unreachable.returncode == 69 and "127.0.0.1:9" in unreachable.stderr


def test_wait_on_a_failed_run_names_the_retry_it_already_has(url, tmp_path):
    first = apsis(url, "run", "ops/flaky", f"dir={tmp_path / 'later'}", "--wait").stdout.strip()
    started = time.monotonic()
    again = apsis(url, "wait", first)
    assert again.returncode == 1 and "retry r" in again.stderr, again.stderr
    assert time.monotonic() - started < 4  # read from its log, not waited for
    last = apsis(url, "wait", first, "--follow-retries")
    assert last.returncode == 0 and last.stderr.splitlines()[-1].endswith(" success"), last.stderr
