"""The tour's settings: the agent's (DEMO_*) plus the demo accounts of the simulated user.

`authserver demo --tour` passes DEMO_TOUR_USERNAME / DEMO_TOUR_PASSWORD (the demo user
at the authserver) and DEMO_TOUR_CALENDAR_USERNAME / DEMO_TOUR_CALENDAR_PASSWORD (the
same person at the calendar provider); DEMO_TOUR_BROWSER, a Chromium executable, makes
the approvals happen in headless Chromium.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from demo_agent.agent.config import AgentConfig

from .user import Credentials


@dataclass(frozen=True)
class TourSettings:
    agent: AgentConfig
    user: Credentials
    calendar_user: Credentials
    browser: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TourSettings:
        return cls(
            agent=AgentConfig.from_env(env),
            user=Credentials(
                env.get("DEMO_TOUR_USERNAME", "alice"), env.get("DEMO_TOUR_PASSWORD", "")
            ),
            calendar_user=Credentials(
                env.get("DEMO_TOUR_CALENDAR_USERNAME", "alice"),
                env.get("DEMO_TOUR_CALENDAR_PASSWORD", ""),
            ),
            browser=env.get("DEMO_TOUR_BROWSER") or None,
        )
