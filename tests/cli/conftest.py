"""The CLI's end-to-end tests reuse the shared real-daemon fixtures."""

from tests.integration.conftest import (  # noqa: F401 - fixtures
    api, apsis_daemon, apsis_daemon_module, daemon, url)
