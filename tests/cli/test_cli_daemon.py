"""End to end: the real `apsis` executable against a real daemon, as scripts use it.

Exit codes (SPEC §1.4), waiting (finished before the call, several runs, timeouts,
across a daemon restart), live output bytes, JSON outputs, fuzzy job ids, NO_COLOR,
broken pipes and Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx

from .helpers import APSIS, apsis, apsisctl, env_for, on_terminal, one_run, popen

JOBS = {
    "ok": "program: [\"true\"]\n",
    "fail": "program: [sh, -c, 'exit 3']\n",
    "broken": "program: [/nonexistent/program]\n",
    "slow": "program: [sleep, '30']\n",
    # Prints, sleeps, prints: ANSI escapes and bytes that are not UTF-8 included. The sleep
    # outlasts a CLI's start on a loaded machine (`output --follow` sees it running).
    "chatty": "program: [sh, -c, \"printf 'one\\\\n'; sleep 3; "
              "printf '\\\\033[31mtwo\\\\033[0m \\\\377\\\\376\\\\n'\"]\n",
    "data/load prices": "params: [date]\nprogram: [echo, '{{ date }}']\n",
    "split": ("program: {type: shell, outputs: split,\n"
              "          command: 'echo out; sleep 0.5; echo err >&2; echo more'}\n"),
    "data/load volumes": "params: [date]\nprogram: [\"true\"]\n",
    "match prefix": "program: [\"true\"]\n",
    "match prefix suffix": "program: [\"true\"]\n",
    "hourly": ("params: [date, time]\n"
               "schedule: {type: interval, interval: 1h}\n"
               "program: [\"true\"]\n"),
}
CHATTY_BYTES = b"one\n\x1b[31mtwo\x1b[0m \xff\xfe\n"


def api_get(url: str, path: str) -> dict:
    return httpx.get(f"{url}/api/v1{path}", timeout=10).json()


# ------------------------------------------------------------------ exit codes

def test_run_wait_exit_codes(url):
    assert apsis(url, "run", "ok", "--wait").returncode == 0
    failed = apsis(url, "run", "fail", "--wait")
    assert failed.returncode == 1
    assert "failure" in failed.stderr
    assert apsis(url, "run", "broken", "--wait").returncode == 3


def test_skipped_run_exits_4(url):
    run_id = one_run(apsis(url, "run", "ok", "--at", "+1h"))
    assert apsis(url, "skip", run_id).returncode == 0
    result = apsis(url, "wait", run_id)
    assert result.returncode == 4
    assert f"{run_id} skipped" in result.stderr


def test_timeout_exits_124_and_names_the_run(url):
    run_id = one_run(apsis(url, "run", "slow"))
    try:
        start = time.monotonic()
        result = apsis(url, "wait", run_id, "--timeout", "0.7")
        assert result.returncode == 124
        assert time.monotonic() - start < 10
        assert "timed out" in result.stderr and run_id in result.stderr
    finally:
        apsis(url, "stop", run_id)


def test_unreachable_daemon_exits_69_naming_the_url():
    dead = "http://127.0.0.1:9"
    start = time.monotonic()
    result = apsis(dead, "--retry-for", "1", "wait", "r1")
    assert result.returncode == 69
    assert time.monotonic() - start >= 0.9
    assert dead in result.stderr and "hint:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unknown_run_job_and_usage_errors_exit_2(url):
    for args in (["wait", "r999999"], ["show", "r999999"], ["run", "no/such/job"],
                 ["wait", "banana"], ["runs", "--since", "yesterday-ish"], ["run"],
                 ["wait", "r1", "--timeout", "forever"]):
        result = apsis(url, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.strip(), args


def test_several_runs_first_unsuccessful_in_argument_order(url):
    ok = one_run(apsis(url, "run", "ok"))
    fail = one_run(apsis(url, "run", "fail"))
    broken = one_run(apsis(url, "run", "broken"))
    assert apsis(url, "wait", ok, ok).returncode == 0
    assert apsis(url, "wait", ok, fail, broken).returncode == 1
    assert apsis(url, "wait", broken, fail).returncode == 3


def test_wait_on_a_run_finished_before_the_call_returns_at_once(url):
    run_id = one_run(apsis(url, "run", "fail"))
    assert apsis(url, "wait", run_id).returncode == 1
    start = time.monotonic()
    result = apsis(url, "wait", run_id, "--quiet")
    assert result.returncode == 1
    assert result.stderr == "" and result.stdout == ""
    assert time.monotonic() - start < 5


def test_wait_json_gives_the_final_runs(url):
    run_id = one_run(apsis(url, "run", "ok"))
    result = apsis(url, "wait", run_id, "--json")
    assert result.returncode == 0
    [run] = json.loads(result.stdout)
    assert run["run_id"] == run_id and run["state"] == "success"


# ------------------------------------------------------------------ output

def test_output_follow_streams_bytes_while_the_program_runs(url):
    run_id = one_run(apsis(url, "run", "chatty"))
    proc = popen(url, "output", run_id, "--follow")
    try:
        assert proc.stdout is not None
        first = proc.stdout.read1(100)  # returns as soon as some bytes arrive
        # The program is still sleeping between its two prints.
        assert first == b"one\n"
        assert api_get(url, f"/runs/{run_id}")["state"] == "running"
        rest = proc.stdout.read()
        assert first + rest == CHATTY_BYTES  # ANSI and non-UTF-8 bytes unchanged
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_output_of_a_finished_run_tail_and_wait(url):
    run_id = one_run(apsis(url, "run", "chatty"))
    waited = apsis(url, "output", run_id, "--wait", text=False)
    assert waited.returncode == 0 and waited.stdout == CHATTY_BYTES
    assert apsis(url, "output", run_id, text=False).stdout == CHATTY_BYTES
    assert apsis(url, "output", run_id, "--tail", "1", text=False).stdout == (
        b"\x1b[31mtwo\x1b[0m \xff\xfe\n")
    missing = apsis(url, "output", run_id, "--output-id", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_run_wait_output_streams_the_output_and_exits_by_state(url):
    result = apsis(url, "run", "dat/lo pri", "date=2026-12-01", "--wait", "--output")
    assert result.returncode == 0
    assert result.stdout == "2026-12-01\n"  # the id goes to stderr, the output to stdout
    assert result.stderr.startswith("r")


def test_run_wait_output_of_split_outputs_streams_each_to_its_own(url):
    # A program with split outputs streams as if run here: stdout to stdout, stderr to stderr.
    result = apsis(url, "run", "split", "--wait", "--output")
    assert result.returncode == 0 and result.stdout == "out\nmore\n"
    run_id = result.stderr.split()[0]
    assert result.stderr.splitlines() == [run_id, "err", f"{run_id} success"], result.stderr


def test_adhoc_runs_an_argv_labelled_ad_hoc(url):
    result = apsis(url, "adhoc", "--wait", "--output", "--", "sh", "-c", "echo hi; exit 4")
    assert result.returncode == 1 and result.stdout == "hi\n"
    created = apsis(url, "adhoc", "--json", "--", "echo", "a b")
    [run] = json.loads(created.stdout)
    assert "ad-hoc" in run["labels"] and run["program"]["argv"] == ["echo", "a b"]


# ------------------------------------------------------------------ daemon restart

def test_wait_survives_a_daemon_restart(apsis_daemon):
    daemon = apsis_daemon({"later": "program: [sh, -c, 'sleep 2; exit 5']\n"})
    run_id = one_run(apsis(daemon.url, "run", "later"))
    proc = popen(daemon.url, "wait", run_id)
    try:
        time.sleep(0.8)
        daemon.restart(kill=True)  # SIGKILL: the wait's connections just drop
        assert proc.wait(40) == 1  # the reattached run's failure, not a lost wait
        assert f"{run_id} failure" in proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ JSON, listings

def test_json_outputs_parse(url):
    ok = one_run(apsis(url, "run", "ok", "--wait"))
    runs = json.loads(apsis(url, "runs", "--json", "-j", "ok").stdout)
    assert ok in [r["run_id"] for r in runs] and all(r["job_id"] == "ok" for r in runs)
    shown = json.loads(apsis(url, "show", ok, "--json").stdout)
    assert shown["run_id"] == ok and shown["state"] == "success"
    jobs = json.loads(apsis(url, "jobs", "--json").stdout)
    assert {j["job_id"] for j in jobs} >= {"ok", "data/load prices"}
    log = json.loads(apsis(url, "log", ok, "--json").stdout)
    assert [e["state"] for e in log if e.get("state")][-1] == "success"
    job = json.loads(apsis(url, "job", "hourly", "--next", "2", "--json").stdout)
    assert job["job_id"] == "hourly" and len(job["next_runs"]) == 2
    # Without --json: the job file as written, then the next times.
    shown_job = apsis(url, "job", "hourly", "--next", "2").stdout
    assert JOBS["hourly"].strip() in shown_job and "source" not in shown_job
    assert shown_job.count("time=") == 2
    created = json.loads(apsis(url, "run", "ok", "--json").stdout)
    assert created[0]["job_id"] == "ok" and created[0]["run_id"].startswith("r")


def test_runs_filters_and_times(url):
    run_id = one_run(apsis(url, "run", "data/load prices", "date=2026-01-05", "--wait"))
    result = apsis(url, "runs", "date=2026-01-05", "--times", "--utc")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith(run_id + " "))
    assert "success" in line and "data/load prices" in line and "0:00:0" in line
    failures = json.loads(apsis(url, "runs", "-s", "failure", "--json").stdout)
    assert all(r["state"] == "failure" for r in failures)
    assert len(json.loads(apsis(url, "runs", "--limit", "2", "--json").stdout)) == 2


def test_runs_all_streams_json(url):
    every = json.loads(apsis(url, "runs", "--all", "--json").stdout)
    assert len(every) >= len(json.loads(apsis(url, "runs", "--json", "-n", "5").stdout))
    assert len({r["run_id"] for r in every}) == len(every)


def test_follow_json_lines(url):
    proc = popen(url, "runs", "--follow", "--json", "-j", "ok", "-n", "1")
    try:
        time.sleep(1.0)
        run_id = one_run(apsis(url, "run", "ok", "--wait"))
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(10)
    assert proc.returncode == 130
    updates = [json.loads(line) for line in out.decode().splitlines()]
    mine = [u["state"] for u in updates if u["run_id"] == run_id]
    assert mine[-1] == "success" and len(mine) >= 2


# ------------------------------------------------------------------ fuzzy ids

def test_fuzzy_job_ids_and_ambiguity(url):
    result = apsis(url, "run", "dat/lo vol", "date=x", "--json")
    assert json.loads(result.stdout)[0]["job_id"] == "data/load volumes"
    ambiguous = apsis(url, "run", "dat/lo", "date=x")
    assert ambiguous.returncode == 2
    assert "data/load prices" in ambiguous.stderr and "data/load volumes" in ambiguous.stderr
    assert ambiguous.stdout == ""
    none = apsis(url, "job", "zzz/yyy")
    assert none.returncode == 2 and "no job matches" in none.stderr
    # One word against ids of two segments: the hint names the folder it abbreviates.
    folder = apsis(url, "job", "da")
    assert folder.returncode == 2 and "no job matches 'da'" in folder.stderr
    assert "the folder data/" in folder.stderr and "'data/load prices'" in folder.stderr


def test_a_prefix_of_two_job_ids_is_ambiguous_but_an_exact_id_wins(url):
    # Issue 12.11: "match pre" matches "match prefix" word for word and "match prefix
    # suffix" by prefix; running either would be a guess.
    ambiguous = apsis(url, "run", "match pre")
    assert ambiguous.returncode == 2 and ambiguous.stdout == ""
    assert "ambiguous" in ambiguous.stderr
    assert "match prefix," in ambiguous.stderr and "match prefix suffix" in ambiguous.stderr
    for job_id in ("match prefix", "match prefix suffix"):  # nothing was run
        assert api_get(url, f"/runs?job_id={job_id}")["runs"] == []
    exact = apsis(url, "run", "match prefix", "--json")
    assert exact.returncode == 0 and json.loads(exact.stdout)[0]["job_id"] == "match prefix"


# ------------------------------------------------------------------ operations, backfill

def test_operations_and_rerun(url):
    run_id = one_run(apsis(url, "run", "ok", "--at", "+2h"))
    refused = apsis(url, "stop", run_id)
    assert refused.returncode == 1 and run_id in refused.stderr
    assert apsis(url, "start", run_id).returncode == 0
    assert apsis(url, "wait", run_id).returncode == 0
    assert apsis(url, "mark", "failure", run_id).returncode == 0
    assert apsis(url, "wait", run_id).returncode == 1
    new_id = one_run(apsis(url, "rerun", run_id))
    assert new_id != run_id and apsis(url, "wait", new_id).returncode == 0


def test_backfill_dry_run_filters_and_waves(url):
    window = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T03:00:00Z"]
    dry = apsis(url, "backfill", "hourly", *window, "--dry-run", "--json")
    planned = json.loads(dry.stdout)  # one document (SPEC §1.4)
    assert [p["time"] for p in planned] == ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z",
                                            "2026-01-01T02:00:00Z"]
    one = apsis(url, "backfill", "hourly", "time=2026-01-01T01:00:00Z", *window, "--dry-run",
                "--json")
    assert len(one.stdout.splitlines()) == 1
    made = apsis(url, "backfill", "hourly", *window, "--max-parallel", "2")
    assert made.returncode == 0, made.stderr
    ids = made.stdout.split()
    assert len(ids) == 3
    runs = [json.loads(apsis(url, "show", r, "--json").stdout) for r in ids]
    assert [r["times"]["schedule"] for r in runs] == [p["time"] for p in planned]
    assert all(r["state"] == "success" for r in runs)


# ------------------------------------------------------------------ terminals and pipes

def test_colour_on_a_terminal_and_never_with_no_color(url):
    apsis(url, "run", "ok", "--wait")
    _, coloured = on_terminal(["--no-pager", "runs"], env_for(url, TERM="xterm-256color"))
    assert b"\x1b[" in coloured and b"ok" in coloured
    _, plain = on_terminal(["--no-pager", "runs"],
                           env_for(url, TERM="xterm-256color", NO_COLOR="1"))
    assert b"ok" in plain and b"\x1b[" not in plain
    piped = apsis(url, "runs")
    assert "\x1b[" not in piped.stdout


def test_broken_pipe_exits_quietly(url):
    result = subprocess.run(f"'{APSIS}' events --since 0 | head -n 1; exit ${{PIPESTATUS[0]}}",
                            shell=True, executable="/bin/bash", env=env_for(url), check=False,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stderr == ""
    assert json.loads(result.stdout)["seq"] >= 1


def test_ctrl_c_exits_130(url):
    run_id = one_run(apsis(url, "run", "slow"))
    proc = popen(url, "wait", run_id)
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        apsis(url, "stop", run_id)


def test_apsisctl_reload_dry_run_and_sanity(apsis_daemon):
    daemon = apsis_daemon({"ok": JOBS["ok"]}, config="watch_jobs: false\n")
    url = daemon.url
    daemon.write_job("new/one", "program: [\"true\"]\n")
    dry = apsisctl(url, "reload", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == ["added", "new/one"]
    assert "would change" in dry.stderr
    assert "new/one" not in apsis(url, "jobs").stdout
    done = apsisctl(url, "reload", "--json")
    assert json.loads(done.stdout)["added"] == ["new/one"]
    assert "new/one" in apsis(url, "jobs").stdout
    sanity = apsisctl(url, "sanity", "--json")
    assert sanity.returncode == 0, sanity.stdout + sanity.stderr
    assert json.loads(sanity.stdout) == []
    assert apsisctl(url, "shutdown").returncode == 0
    assert daemon.wait_exit(20) == 0


def _complete(url: str, words: str, cword: int) -> list[str]:
    env = env_for(url, _APSIS_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    result = subprocess.run([APSIS], env=env, capture_output=True, text=True, timeout=20,
                            check=False)
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_completion_of_commands_job_ids_and_run_ids(url):
    assert {"run", "runs"} <= set(_complete(url, "apsis ru", 1))
    assert _complete(url, "apsis run dat/lo", 2) == ["data/load prices", "data/load volumes"]
    run_id = one_run(apsis(url, "run", "ok"))
    assert run_id in _complete(url, f"apsis wait {run_id[:-1]}", 2)
    # An unreachable daemon completes nothing, quietly and quickly.
    start = time.monotonic()
    assert _complete("http://127.0.0.1:9", "apsis wait r", 2) == []
    assert time.monotonic() - start < 5


def test_an_operation_that_fails_for_some_runs_says_so_once_a_run(url):
    done = one_run(apsis(url, "run", "ok", "--wait"))
    result = apsis(url, "signal", "TERM", done, "r999999")
    assert result.returncode == 1  # the first failure (409 on a finished run) decides
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") and "(hint: " in line
                                   for line in lines), result.stderr
    assert lines[0].count(done) == 1 and "r999999" in lines[1]


def test_marking_a_run_does_not_stretch_its_elapsed_time(url):
    run_id = one_run(apsis(url, "run", "ok", "--wait"))

    def elapsed() -> str:
        shown = apsis(url, "show", run_id).stdout
        return next(line for line in shown.splitlines() if line.startswith("elapsed"))

    before = elapsed()
    time.sleep(1.2)
    assert apsis(url, "mark", "failure", run_id).returncode == 0
    assert elapsed() == before


def test_show_writes_the_program_as_a_command_line(url):
    import shlex

    run_id = one_run(apsis(url, "run", "chatty", "--wait"))
    argv = json.loads(apsis(url, "show", run_id, "--json").stdout)["program"]["argv"]
    shown = apsis(url, "show", run_id).stdout
    line = next(line for line in shown.splitlines() if line.startswith("program"))
    kind, _, command = line.split(None, 1)[1].partition(": ")
    # argv as a shell would read it back; the default stop and outputs left out.
    assert kind == "program" and shlex.split(command) == argv
