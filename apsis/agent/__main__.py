"""`python -m apsis.agent connect --state-dir DIR`: the agent's own command line."""

import sys

from apsis.agent.agent import main

sys.exit(main())
