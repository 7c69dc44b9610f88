"""What the tour prints: step headings, HTTP exchanges, decoded tokens, people's actions.

Every credential is masked before it reaches this module (the SDK's trace masks
request and response fields, the simulated user masks its own forms), and every line
still goes through the SDK's `Redactor` and a JWT pattern as a second line of
defence: the tour's output is meant to be pasted into docs and bug reports.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import jwt

from demo_agent.sdk import Exchange, Redactor, TokenSet, mask, peek_claims

JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+")
MAX_JSON_LINES = 28
RULE = "=" * 78

# What each grant's token response holds, in a learner's words.
GRANT_NAMES = {
    "authorization_code": "authorization code grant (RFC 6749 §4.1.3)",
    "refresh_token": "refresh grant (RFC 6749 §6)",
    "client_credentials": "client credentials grant (RFC 6749 §4.4): the agent's own token",
    "urn:ietf:params:oauth:grant-type:token-exchange": "token exchange (RFC 8693 §2.2)",
    "urn:openid:params:grant-type:ciba": "CIBA token request (CIBA Core §10.1)",
}


class Narrator:
    """Prints the tour; thread-safe, since the simulated user acts on its own thread."""

    def __init__(self, redactor: Redactor, out: Callable[[str], None] = print) -> None:
        self.redactor = redactor
        self.out = out
        self._lock = threading.Lock()
        self.step_number = 0

    def line(self, text: str = "") -> None:
        scrubbed = JWT.sub(lambda m: mask(m.group(0)), self.redactor.scrub(text))
        with self._lock:
            for part in scrubbed.splitlines() or [""]:
                self.out(part)

    def step(self, title: str, standards: str, explanation: str) -> None:
        self.step_number += 1
        self.line()
        self.line(RULE)
        self.line(f"Step {self.step_number}. {title}")
        self.line(f"Standards: {standards}")
        self.line(RULE)
        for paragraph in explanation.strip().split("\n"):
            self.line(f"  {paragraph.strip()}")
        self.line()

    def note(self, text: str) -> None:
        self.line(f"  * {text}")

    # -- HTTP --------------------------------------------------------------------------

    def exchange(self, exchange: Exchange) -> None:
        """One request the agent made, with its answer (both already masked)."""
        self.line(f"  agent --> {exchange.method} {exchange.url}")
        auth = exchange.headers.get("Authorization")
        if auth:
            self.line(f"            Authorization: {auth}")
        if exchange.request:
            self._json("            ", exchange.request)
        self.line(f"  agent <-- {exchange.status}")
        if exchange.response is not None:
            self._json("            ", _abridged(exchange.url, exchange.response))

    def page(self, who: str, method: str, url: str, status: int, detail: str = "") -> None:
        """One request a person's browser made (forms masked by the caller)."""
        suffix = f"  {detail}" if detail else ""
        self.line(f"  [{who}] {method} {url} -> {status}{suffix}")

    def person(self, who: str, text: str) -> None:
        self.line(f"  [{who}] {text}")

    def _json(self, indent: str, value: Any, label: str = "") -> None:
        """Pretty JSON; `label` starts the first line, later lines align under it."""
        lines = json.dumps(value, indent=2, sort_keys=False, default=str).splitlines()
        if len(lines) > MAX_JSON_LINES:
            hidden = len(lines) - MAX_JSON_LINES
            lines = [*lines[:MAX_JSON_LINES], f"... ({hidden} more lines)"]
        for number, text in enumerate(lines):
            lead = label if number == 0 else " " * len(label)
            self.line(indent + lead + text)

    # -- tokens ------------------------------------------------------------------------

    def tokens(self, grant_type: str, tokens: TokenSet) -> None:
        """Decode what a token response holds; opaque credentials are only named."""
        self.line(f"  tokens from the {GRANT_NAMES.get(grant_type, grant_type)}:")
        self._token("access token", tokens.access_token, tokens.issued_token_type)
        if tokens.id_token:
            self._token("ID token", tokens.id_token, None)
        if tokens.refresh_token:
            self.line(
                f"    refresh token {mask(tokens.refresh_token)}: opaque; it stays in the "
                "SDK's memory and never reaches the planner or the screen"
            )
        if tokens.authorization_details:
            self.line("    authorization_details granted (RFC 9396 §7):")
            self._json("      ", tokens.authorization_details)

    def _token(self, name: str, value: str, issued_type: str | None) -> None:
        if not JWT.fullmatch(value):
            kind = "an upstream provider's token" if issued_type else "an opaque token"
            self.line(f"    {name} {mask(value)}: {kind}, shown only as a fingerprint")
            return
        header = jwt.get_unverified_header(value)
        self.line(f"    {name} {mask(value)} is a JWT (decoded here without verification):")
        self.line(f"      header  {json.dumps(header, sort_keys=True)}")
        self._json("      ", peek_claims(value), "claims  ")


def _abridged(url: str, body: Any) -> Any:
    """Discovery and JWKS documents are long; a learner needs their shape, not every key."""
    if url.endswith("/.well-known/openid-configuration") and isinstance(body, dict):
        keep = (
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "backchannel_authentication_endpoint",
            "jwks_uri",
            "code_challenge_methods_supported",
            "grant_types_supported",
        )
        shown = {key: body[key] for key in keep if key in body}
        shown["..."] = f"{len(body) - len(shown)} more fields"
        return shown
    if isinstance(body, dict) and isinstance(body.get("keys"), list):
        return {
            "keys": [{k: key.get(k) for k in ("kid", "kty", "alg", "use")} for key in body["keys"]]
        }
    return body
