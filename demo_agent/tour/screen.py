"""What the simulated person reads off the agent's screen: the approval code, the link.

A person compares the code the agent prints with the one on the approval page, and
opens the connect link the agent prints; the tour's person does the same, from the
agent's printed lines, never from the agent's internals.
"""

from __future__ import annotations

import queue
import re

from .user import TourError

APPROVAL_CODE = re.compile(r"approve the request showing (\S+)")
CONNECT_LINK = re.compile(r"Connect your calendar first: (\S+)")
WAIT_SECONDS = 90.0


class AgentLines:
    """The agent's printed lines, watched for what a person would read off the screen."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()

    def feed(self, line: str) -> None:
        self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = WAIT_SECONDS) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise TourError(f"the agent never printed {pattern.pattern!r}") from None
            found = pattern.search(line)
            if found:
                return found.group(1)

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()
