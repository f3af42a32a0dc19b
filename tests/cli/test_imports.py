"""Import hygiene: `apsis --help` and `apsis wait` start fast (SPEC Part 2, STYLE: CLI).

Each check runs the real entry point in a fresh interpreter and looks at sys.modules
afterwards, so an eager import anywhere on the path (ours or a library's) shows up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Never needed to print help or to start waiting.
HEAVY = ["textual", "apsis_tui", "jinja2", "aiosqlite", "uvicorn", "starlette", "apsis.engine",
         "apsis.store", "apsis.daemon", "apsis.api", "apsis.template", "yaml", "pygments",
         "textual_serve", "aiohttp"]

PROBE = r"""
import json, sys
sys.argv = ["apsis", *json.loads(sys.argv[1])]
from apsis_cli.apsis import main
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(OUT, "w") as f:
    json.dump({"code": code, "modules": sorted(k for k, v in sys.modules.items() if v is not None)}, f)
"""


def loaded_modules(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    code = PROBE.replace("OUT", repr(str(out)))
    subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], cwd=ROOT,
                   capture_output=True, timeout=30, check=False)
    data = json.loads(out.read_text())
    return data["code"], set(data["modules"])


def present(modules: set[str], names: list[str]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_help_imports_only_click(tmp_path):
    code, modules = loaded_modules(tmp_path, "--help")
    assert code == 0
    assert present(modules, HEAVY + ["rich", "httpx", "websockets", "asyncio"]) == []


def test_command_help_is_as_light(tmp_path):
    code, modules = loaded_modules(tmp_path, "runs", "--help")
    assert code == 0
    assert present(modules, HEAVY + ["rich", "httpx", "websockets"]) == []


def test_wait_imports_no_tui_server_or_websockets_before_connecting(tmp_path):
    # Nothing listens on port 9: the wait fails before it would open the event stream.
    code, modules = loaded_modules(tmp_path, "--url", "http://127.0.0.1:9", "--retry-for", "0",
                                   "wait", "r1")
    assert code == 69
    assert present(modules, HEAVY + ["websockets", "rich"]) == []
    # httpx must not drag in its own command line tool (click is ours anyway).
    assert present(modules, ["httpx._main", "pygments"]) == []


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is not installed (pip install -e '.[test]')")
def test_import_linter_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


TOKEN = "operate-token-0123456789"


def test_runs_is_one_plain_get_without_event_loop_or_http_library(tmp_path, apsis_daemon):
    # `apsis runs` makes one request: no asyncio, httpx or TLS set-up to start up for it.
    daemon = apsis_daemon({"noop": "program: {type: no-op}\n"},
                          config=f"api: {{tokens: {{{TOKEN}: operate}}}}\n", token=TOKEN)
    env_url = ["--url", daemon.url, "--token", TOKEN]
    with daemon_client(daemon) as http:
        http.post("/runs", json={"job_id": "noop", "count": 3}).raise_for_status()
    code, modules = loaded_modules(tmp_path, *env_url, "runs", "--limit", "2")
    assert code == 0
    assert present(modules, HEAVY + ["asyncio", "httpx", "ssl", "websockets", "rich"]) == []
    result = subprocess.run([str(Path(sys.executable).parent / "apsis"), *env_url, "runs",
                             "--json", "--limit", "2"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert [r["run_id"] for r in json.loads(result.stdout)] == ["r3", "r2"]
    # A refusal is the same one-line error as through the async client.
    refused = subprocess.run([str(Path(sys.executable).parent / "apsis"), "--url", daemon.url,
                              "runs"], capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "--token" in refused.stderr


def daemon_client(daemon):
    import httpx

    return httpx.Client(base_url=daemon.api, headers={"Authorization": f"Bearer {TOKEN}"})
