"""The CLI's end-to-end tests reuse the shared real-daemon fixtures."""

from tests.integration.conftest import apsis_daemon, apsis_daemon_module  # noqa: F401
