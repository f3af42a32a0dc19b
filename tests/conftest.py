"""Settings every test shares."""

import os

import pytest

# Agents started by tests (in-process engines and daemon subprocesses alike) exit
# soon after their last program, instead of lingering for a minute.
os.environ.setdefault("APSIS_AGENT_IDLE_TIMEOUT", "5")

from tests.pg import pg_schema_template, pg_server, pg_url  # noqa: F401,E402  (a private PostgreSQL, a database a test)
from tests.sshd import sshd  # noqa: F401  (a private sshd on 127.0.0.1 for remote runs)


@pytest.fixture(scope="session")
def backend() -> str:
    """Where the daemons of tests/integration/conftest.py keep their database, "sqlite"
    or "postgresql": "sqlite" unless a test is parametrised with both (the integration
    tests are, by that conftest's `pytest_generate_tests`)."""
    return "sqlite"
