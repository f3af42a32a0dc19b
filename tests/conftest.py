"""Settings every test shares."""

import os

# Agents started by tests (in-process engines and daemon subprocesses alike) exit
# soon after their last program, instead of lingering for a minute.
os.environ.setdefault("APSIS_AGENT_IDLE_TIMEOUT", "5")
