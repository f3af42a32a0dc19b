"""The chaos tests reuse the integration suite's real-daemon fixtures."""

from tests.integration.conftest import apsis_daemon, apsis_daemon_module  # noqa: F401
