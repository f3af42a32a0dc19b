"""Settings every test shares."""

import os
import signal

import pytest

# Agents started by tests (in-process engines and daemon subprocesses alike) exit
# soon after their last program, instead of lingering for a minute.
os.environ.setdefault("APSIS_AGENT_IDLE_TIMEOUT", "5")

# pytest-xdist's workers (`make test`) start with LINES=24 and COLUMNS=80 in their
# environment, which a CLI on a test's pseudo-terminal would take over the terminal's size.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("LINES", None)
    os.environ.pop("COLUMNS", None)

# Run from the background of a script (or under nohup), the suite would inherit SIGINT
# ignored, and so would every CLI a test stops with it (Python keeps an ignored SIGINT).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from tests.pg import pg_schema_template, pg_server, pg_url  # noqa: F401,E402  (a private PostgreSQL, a database a test)
from tests.sshd import sshd  # noqa: F401  (a private sshd on 127.0.0.1 for remote runs)


@pytest.fixture(scope="session")
def backend() -> str:
    """Where the daemons of tests/integration/conftest.py keep their database, "sqlite"
    or "postgresql": "sqlite" unless a test is parametrised with both (the integration
    tests are, by that conftest's `pytest_generate_tests`)."""
    return "sqlite"


BACKEND_ORDER = ("sqlite", "postgresql")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each module, every test on SQLite, then every test on PostgreSQL (each
    backend's in file order). pytest's own grouping by the module-scoped `backend`
    parameter of tests/integration/conftest.py comes undone next to other parameters: a
    module's shared daemon was stopped and started again dozens of times."""
    def backend_of(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        return BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else 0

    modules: dict[object, list[int]] = {}
    for i, item in enumerate(items):
        modules.setdefault(item.path, []).append(i)
    reordered = list(items)
    for positions in modules.values():
        ordered = sorted((items[i] for i in positions), key=backend_of)
        for i, item in zip(positions, ordered):
            reordered[i] = item
    items[:] = reordered
