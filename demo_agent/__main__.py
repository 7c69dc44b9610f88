"""`python -m demo_agent` (console script `demo-agent`): the demo's CLI agent.

    demo-agent                                  interactive chat
    demo-agent --ask "buy 10 NET at most 120"   one request, then exit (0 when it completed)
    demo-agent --trace ...                      also print each HTTP exchange (masked)

Settings come from DEMO_* environment variables (see demo_agent.agent.config).
"""

from __future__ import annotations

import sys

from demo_agent.agent.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
