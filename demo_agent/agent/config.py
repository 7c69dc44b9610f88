"""The agent's settings, from DEMO_* environment variables with the demo's defaults.

`authserver demo` passes DEMO_ISSUER, DEMO_AGENT_CLIENT_ID, DEMO_AGENT_CLIENT_SECRET
(required, or DEMO_AGENT_CLIENT_SECRET_FILE: there is no safe default for a secret),
DEMO_AGENT_REDIRECT_URI,
DEMO_BROKER_URL and DEMO_CALENDAR_URL. DEMO_USERNAME is the CIBA `login_hint`
(default: the signed-in user's preferred_username). OPENAI_BASE_URL, OPENAI_MODEL
and OPENAI_API_KEY together turn on the LLM planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from demo_agent.sdk.masking import mask

from .llm import LlmConfig

DEFAULTS = {
    "DEMO_ISSUER": "http://127.0.0.1:8000",
    "DEMO_AGENT_CLIENT_ID": "demo-agent",
    "DEMO_AGENT_REDIRECT_URI": "http://127.0.0.1:8765/callback",
    "DEMO_BROKER_URL": "http://127.0.0.1:8001",
    "DEMO_CALENDAR_URL": "http://127.0.0.1:8002",
    "DEMO_AGENT_SCOPE": "openid profile email offline_access portfolio:read",
}
CALENDAR_CONNECTION = "calendar"
CALENDAR_SCOPE = "calendar.freebusy"
PORTFOLIO_SCOPE = "portfolio:read"


class ConfigError(ValueError):
    """A required setting is missing; the message names it."""


def _client_secret(env: Mapping[str, str]) -> str:
    """DEMO_AGENT_CLIENT_SECRET, or the first line of the file DEMO_AGENT_CLIENT_SECRET_FILE
    (a container secret: the value then never appears in the environment)."""
    secret = (env.get("DEMO_AGENT_CLIENT_SECRET") or "").strip()
    path = (env.get("DEMO_AGENT_CLIENT_SECRET_FILE") or "").strip()
    if not secret and path:
        try:
            with open(path, encoding="utf-8") as handle:
                secret = handle.readline().strip()
        except OSError as error:
            raise ConfigError(
                f"DEMO_AGENT_CLIENT_SECRET_FILE cannot be read: {error.strerror}"
            ) from None
    if not secret:
        raise ConfigError(
            "DEMO_AGENT_CLIENT_SECRET (or DEMO_AGENT_CLIENT_SECRET_FILE) is not set "
            "(`authserver demo` passes it; `authserver demo --seed-only --json` prints it)"
        )
    return secret


@dataclass(frozen=True)
class AgentConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    broker_url: str
    calendar_url: str
    scope: str
    username: str | None = None
    llm: LlmConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentConfig:
        def get(name: str) -> str:
            return (env.get(name) or DEFAULTS[name]).strip().rstrip("/")

        secret = _client_secret(env)
        return cls(
            issuer=get("DEMO_ISSUER"),
            client_id=get("DEMO_AGENT_CLIENT_ID"),
            client_secret=secret,
            redirect_uri=(
                env.get("DEMO_AGENT_REDIRECT_URI") or DEFAULTS["DEMO_AGENT_REDIRECT_URI"]
            ),
            broker_url=get("DEMO_BROKER_URL"),
            calendar_url=get("DEMO_CALENDAR_URL"),
            scope=(env.get("DEMO_AGENT_SCOPE") or DEFAULTS["DEMO_AGENT_SCOPE"]).strip(),
            username=(env.get("DEMO_USERNAME") or "").strip() or None,
            llm=LlmConfig.from_env(env),
        )

    @property
    def approvals_url(self) -> str:
        """Where the user approves CIBA requests (the authserver's approval page)."""
        return f"{self.issuer}/approvals"

    def __repr__(self) -> str:
        return (
            f"AgentConfig(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"client_secret={mask(self.client_secret)}, broker_url={self.broker_url!r}, "
            f"calendar_url={self.calendar_url!r}, llm={self.llm!r})"
        )
