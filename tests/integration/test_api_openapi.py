"""The OpenAPI document: valid, complete, and true of a real daemon (schemathesis)."""

from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance

from apsis.api.app import api_routes
from apsis.api.openapi import openapi_document

JOBS = {
    "noop": "program: {type: no-op}\n",
    "data/load prices": "params: [date]\nprogram: {type: no-op}\nmetadata: {labels: [prices]}\n",
}


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


schema = schemathesis.openapi.from_dict(openapi_document()).exclude(
    # Stopping the daemon would end the run; websockets are tested with a websocket client.
    operation_id=["shutdown", "events"],
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case, daemon):
    # Every other check stays on: no 5xx, documented statuses, content types and bodies,
    # invalid data rejected. Acceptance of schema-valid data is off: a time (`now`,
    # `+1h`, ISO 8601) or a cursor has a meaning no JSON Schema expresses, and a 400
    # saying what is wrong with it is the right answer.
    case.call_and_validate(base_url=daemon.api, timeout=30,
                           excluded_checks=[positive_data_acceptance])
