"""The OpenAPI document: valid, complete, and true of a real daemon (schemathesis)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from apsis.api.app import api_routes
from apsis.api.openapi import openapi_document

from .conftest import ROOT
from .openapi_hooks import JOBS  # the hooks know these jobs' params


@pytest.fixture(scope="module")
def daemon(apsis_daemon_module):
    daemon = apsis_daemon_module(JOBS)
    # Some runs for the generated requests to find.
    httpx.post(daemon.api + "/runs", json={"job_id": "noop", "count": 3}, timeout=30)
    return daemon


def test_document_is_valid_openapi():
    validate(openapi_document())


def test_served_document_is_the_same(daemon):
    assert httpx.get(daemon.api + "/openapi.json").json() == openapi_document()


def test_job_fields_are_documented(daemon):
    schemas = openapi_document()["components"]["schemas"]
    one = httpx.get(daemon.api + "/jobs/noop").json()
    listed = httpx.get(daemon.api + "/jobs").json()["jobs"][0]
    assert set(one) == set(schemas["JobDetail"]["properties"])
    assert one["source"] == JOBS["noop"]
    # The file's text is for one job only: not in lists (nor events).
    assert set(listed) == set(schemas["Job"]["properties"])


def test_every_route_is_documented():
    documented = {(path, method) for path, ops in openapi_document()["paths"].items()
                  for method in ops}
    for route in api_routes():
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        methods = getattr(route, "methods", None) or {"GET"}  # a websocket: documented as GET
        for method in methods - {"HEAD"}:
            assert (path, method.lower()) in documented, (path, method)
    assert ("/jobs/{job_id}/schedule", "get") in documented


@pytest.mark.parametrize("program", [[True], [None], ["echo", {}]])
def test_an_argv_of_other_than_words_is_an_invalid_job(daemon, program):
    # Found by schemathesis: a bare argv list holding a boolean was a 500.
    response = httpx.post(daemon.api + "/runs", json={"job": {"program": program}}, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_job"
    assert "program argv" in response.json()["error"]["message"]


# `st run` as a user would run it: every phase (examples, coverage, fuzzing, stateful
# through the document's links) and every check, bounded and seeded.
ST_CONFIG = """
[[operations]]
# Over plain HTTP a websocket path answers 426 whatever its parameters: that is what is
# checked here; the streams themselves are tested with websocket clients.
include-operation-id = "events"
checks.positive_data_acceptance.expected-statuses = [426]
checks.negative_data_rejection.expected-statuses = [426]

[phases.stateful.inference]
# The document's own links only (a created run to its operations): inferred ones would
# feed a job id from GET /jobs into POST /runs without the args that job needs.
algorithms = []
"""
SEED = 11
MAX_EXAMPLES = 6  # per operation and phase: ~800 requests in all, ~15 s


def test_api_conforms_to_its_document(daemon, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(ST_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "SCHEMATHESIS_HOOKS": "tests.integration.openapi_hooks"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run",
         daemon.api + "/openapi.json", "--url", daemon.api, "--checks", "all",
         # Stopping the daemon would end the run.
         "--exclude-operation-id", "shutdown",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
         "--no-color", "--report-dir", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-4000:]
    assert " passed" in result.stdout and "Stateful" in result.stdout
