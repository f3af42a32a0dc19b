"""`apsisctl check-job` as a pre-commit hook or CI step runs it: a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

APSISCTL = [sys.executable, "-m", "apsis_cli.apsisctl"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*APSISCTL, *args], capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
def jobs(tmp_path):
    root = tmp_path / "jobs"
    root.mkdir()
    (root / "ok.yaml").write_text("params: [date]\nschedule: {type: daily, tz: UTC, daytime: '09:00'}\n"
                                  "program: echo {{ date|shquote }}\n")
    return root


def test_clean_directory_exits_0(jobs, tmp_path):
    result = run("check-job", "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "1 job checked: 0 errors" in result.stderr


def test_broken_files_exit_1_one_line_per_problem(jobs, tmp_path):
    (jobs / "bad.yaml").write_text("program: echo\nschedule: {type: daily, tz: Mars/Olympus, daytime: '09:00'}\nfoo: 1\n")
    (jobs / "worse.yaml").write_text("program: [\n")
    result = run("check-job", "jobs", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(l.startswith("jobs/bad.yaml:2:") and "Mars/Olympus" in l for l in lines), lines
    assert any(l.startswith("jobs/bad.yaml:3:1: unknown key 'foo'") for l in lines), lines
    assert any(l.startswith("jobs/worse.yaml:") and "YAML syntax error" in l for l in lines), lines


def test_a_file_is_checked_within_its_directory(jobs, tmp_path):
    (jobs / ".apsis-jobs.yaml").write_text("globals: {x: 1}\n")
    (jobs / "dep.yaml").write_text("program: echo {{ x }}\ncondition: {type: dependency, job_id: ok, args: {date: '2026-01-01'}}\n")
    (jobs / "bad.yaml").write_text("program: echo\nfoo: 1\n")
    result = run("check-job", "jobs/dep.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # bad.yaml is not reported
    result = run("check-job", "jobs/bad.yaml", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout.startswith("jobs/bad.yaml:2:1:")


def test_json_and_github_formats(jobs, tmp_path):
    (jobs / "bad.yaml").write_text("program: echo\nfoo: 1\n")
    result = run("check-job", "jobs", "--format", "json", cwd=tmp_path)
    doc = json.loads(result.stdout)
    assert result.returncode == 1 and doc["ok"] is False and doc["errors"] == 1
    assert doc["problems"][0]["path"] == "jobs/bad.yaml" and doc["problems"][0]["line"] == 2
    result = run("check-job", "jobs", "--format", "github", cwd=tmp_path)
    assert result.stdout.startswith("::error file=jobs/bad.yaml,line=2,col=1::unknown key 'foo'")


def test_usage_errors_exit_2(tmp_path):
    assert run("check-job", "nonexistent", cwd=tmp_path).returncode == 2
    assert run("check-job", cwd=tmp_path).returncode == 2
    result = run("check-job", str(tmp_path), "--from", "2026-01-01", cwd=tmp_path)
    assert result.returncode == 2 and "--list-runs" in result.stderr


def test_list_runs(jobs, tmp_path):
    result = run("check-job", "jobs", "--list-runs", "--from", "2026-03-01", "--to", "2026-03-03", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = [json.loads(l) for l in result.stdout.splitlines()]
    assert runs == [
        {"job_id": "ok", "args": {"date": "2026-03-01"}, "time": "2026-03-01T09:00:00Z"},
        {"job_id": "ok", "args": {"date": "2026-03-02"}, "time": "2026-03-02T09:00:00Z"},
    ]


def test_list_runs_stdout_is_json_lines_only_even_with_warnings_and_errors(jobs, tmp_path):
    # Issue 12.15: `--list-runs | jq` must work; a broken file is reported on stderr,
    # the jobs that loaded still have their runs listed, and the exit status is 1.
    (jobs / "loud.yaml").write_text("params: [date]\nschedule: {type: daily, tz: UTC, daytime: '10:00'}\n"
                                    "program: echo {{ date }}\n")  # unquoted: a warning
    (jobs / "bad.yaml").write_text("program: echo\nschedule: {type: daily, tz: Mars/Olympus, daytime: '09:00'}\n")
    (jobs / "old.yml").write_text("program: echo\n")
    result = run("check-job", "jobs", "--list-runs", "--from", "2026-03-01", "--to", "2026-03-02", cwd=tmp_path)
    assert result.returncode == 1
    runs = [json.loads(l) for l in result.stdout.splitlines()]  # every line is JSON
    assert [(r["job_id"], r["time"]) for r in runs] == [
        ("ok", "2026-03-01T09:00:00Z"), ("loud", "2026-03-01T10:00:00Z")]
    assert "Mars/Olympus" in result.stderr and "unquoted" in result.stderr
    assert "jobs/old.yml: warning: not a job" in result.stderr
    assert "checked: 1 error, 2 warnings" in result.stderr


def test_schema_is_json(tmp_path):
    result = run("schema")
    schema = json.loads(result.stdout)
    assert schema["properties"]["program"] and "schedule" in schema["properties"]


def test_processes_sharing_a_big_directory_report_what_one_would(tmp_path):
    # check-job shares the files of a big directory among processes (issue 14.4); each
    # loads and checks its share, so problems that span shares (a dependency on a job
    # another process loaded, a cycle through three shares, a did-you-mean among every
    # job) must come out word for word, in the same order, as from one process.
    root = tmp_path / "jobs"
    (root / "a").mkdir(parents=True)
    (root / ".apsis-jobs.yaml").write_text("globals: {x: 1}\nbogus: 2\n")
    for i in range(300):
        (root / "a" / f"job{i:03}.yaml").write_text(
            "params: [date]\nschedule: {type: daily, tz: UTC, daytime: '09:00'}\n"
            "program: echo {{ date|shquote }}\n"
            f"condition: {{type: dependency, job_id: a/job{(i + 1) % 300:03}}}\n")
    (root / "a" / "job000.yaml").write_text(  # the loop above is one big cycle
        "params: [date]\nschedule: {type: daily, tz: UTC, daytime: '09:00'}\n"
        "program: echo {{ date }} {{ nope }}\n"  # unquoted (warning), undefined (error)
        "condition:\n  - {type: dependency, job_id: a/job299, args: {date: x, extra: 1}}\n"
        "  - {type: dependency, job_id: a/jbo150}\n")
    (root / "a" / "job100.yaml").write_text("program: [\n")
    (root / "a" / "job200.yaml").write_text("program: echo {{ date }\nfoo: 1\n")
    (root / "a" / "old.yml").write_text("program: echo\n")

    def check(*args: str) -> subprocess.CompletedProcess:
        return run("check-job", "jobs", *args, cwd=tmp_path)

    one = check("--workers", "1")
    assert one.returncode == 1
    for problem in ("unknown key 'bogus'", "a/job100.yaml:", "a/job200.yaml:", "old.yml",
                    "dependency cycle", "unknown job 'a/jbo150'", "extra", "nope"):
        assert problem in one.stdout + one.stderr, problem
    for workers in ("3", "7"):
        many = check("--workers", workers)
        assert (many.returncode, many.stdout, many.stderr) == (one.returncode, one.stdout, one.stderr)
    assert check("--workers", "3", "--format", "json").stdout == check("--workers", "1", "--format", "json").stdout
