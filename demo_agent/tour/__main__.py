"""`python -m demo_agent.tour`, started by `authserver demo --tour` with DEMO_* settings."""

from __future__ import annotations

import sys

from .script import main

if __name__ == "__main__":
    sys.exit(main())
