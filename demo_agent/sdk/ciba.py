"""Client-initiated backchannel authentication (OpenID CIBA Core 1.0) with RAR.

`request_approval` sends the authentication request (§7.1) with `login_hint`,
`binding_message` and RFC 9396 `authorization_details`; the answer (§7.3) gives an
`auth_req_id` (a credential: kept private, never printed), `expires_in` and
`interval`. `wait_for_approval` polls the token endpoint (§10.1) no more often than
`interval`, adds 5 seconds on `slow_down` (§11), and ends with tokens, `AccessDenied`
or `ExpiredToken`. In ping mode (§10.2) it waits for the callback first, polling only
as a fallback. Push mode (§10.3) is not supported by this SDK.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AuthorizationPending, ExpiredToken, SdkError, SlowDown
from .masking import mask
from .ping import PingReceiver
from .tokens import TokenSet

if TYPE_CHECKING:
    from .client import AuthClient

CIBA_GRANT = "urn:openid:params:grant-type:ciba"
SLOW_DOWN_STEP = 5
DEFAULT_INTERVAL = 5
PING_FALLBACK_INTERVALS = 6


@dataclass
class CibaSettings:
    """How this client receives decisions: `poll`, or `ping` at its notification endpoint."""

    mode: str = "poll"
    notification_endpoint: str | None = None
    receiver: PingReceiver | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("poll", "ping"):
            raise SdkError("CIBA mode must be poll or ping (push is not supported here)")
        if self.mode == "ping" and not self.notification_endpoint:
            raise SdkError("ping mode needs the registered notification endpoint")

    def ping_receiver(self) -> PingReceiver:
        if self.receiver is None:
            self.receiver = PingReceiver(str(self.notification_endpoint))
        return self.receiver

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None


@dataclass(repr=False)
class PendingApproval:
    """A request waiting for the user; `auth_req_id` stays private to the SDK."""

    expires_in: int
    interval: int
    expires_at: float
    binding_message: str | None
    authorization_details: list[dict[str, Any]] | None
    _auth_req_id: str = field(repr=False)
    _notification_token: str | None = field(default=None, repr=False)
    polls: int = 0
    last_poll: float | None = None

    def remaining(self, now: float) -> float:
        """Seconds until the request expires."""
        return max(self.expires_at - now, 0.0)

    def __repr__(self) -> str:
        return (
            f"PendingApproval(auth_req_id={mask(self._auth_req_id)}, "
            f"binding_message={self.binding_message!r}, expires_in={self.expires_in}, "
            f"interval={self.interval})"
        )


def request_approval(
    client: AuthClient,
    login_hint: str | None,
    scope: str,
    binding_message: str | None,
    authorization_details: list[dict[str, Any]] | None,
    requested_expiry: int | None,
    extra: dict[str, str],
) -> PendingApproval:
    """CIBA Core §7.1 at `backchannel_authentication_endpoint`, authenticated (§7.1.1)."""
    form: dict[str, Any] = {
        "scope": scope,
        "login_hint": login_hint,
        "binding_message": binding_message,
        "requested_expiry": requested_expiry,
        **extra,
    }
    if authorization_details is not None:
        form["authorization_details"] = json.dumps(authorization_details)
    notification_token = None
    if client.ciba.mode == "ping":
        client.ciba.ping_receiver()  # listening before the server can call back
        notification_token = secrets.token_urlsafe(32)
        form["client_notification_token"] = notification_token
        client.redactor.add(notification_token)
    body = client.post("backchannel_authentication_endpoint", form)
    auth_req_id = str(body["auth_req_id"])
    client.redactor.add(auth_req_id)
    expires_in = int(body["expires_in"])
    pending = PendingApproval(
        expires_in=expires_in,
        interval=int(body.get("interval", DEFAULT_INTERVAL)),
        expires_at=client.clock() + expires_in,
        binding_message=binding_message,
        authorization_details=authorization_details,
        _auth_req_id=auth_req_id,
        _notification_token=notification_token,
    )
    if notification_token is not None:
        client.ciba.ping_receiver().expect(notification_token, auth_req_id)
    return pending


def wait_for_approval(
    client: AuthClient,
    pending: PendingApproval,
    on_waiting: Callable[[PendingApproval], None] | None,
) -> TokenSet:
    """Poll until the user decides; `on_waiting` is called after each pending answer."""
    try:
        while True:
            _wait_turn(client, pending)
            if client.clock() > pending.expires_at + 2 * pending.interval:
                raise ExpiredToken(description="the request expired (no answer from the server)")
            try:
                return _poll(client, pending)
            except AuthorizationPending:
                if on_waiting is not None:
                    on_waiting(pending)
            except SlowDown:
                pending.interval += SLOW_DOWN_STEP
    finally:
        if pending._notification_token and client.ciba.receiver is not None:
            client.ciba.receiver.forget(pending._notification_token)


def _poll(client: AuthClient, pending: PendingApproval) -> TokenSet:
    """CIBA Core §10.1: the token request with the auth_req_id."""
    pending.polls += 1
    pending.last_poll = client.clock()
    return client.token_request({"grant_type": CIBA_GRANT, "auth_req_id": pending._auth_req_id})


def _wait_turn(client: AuthClient, pending: PendingApproval) -> None:
    """Poll mode: `interval` seconds. Ping mode: until the ping (or a fallback), then
    whatever is left of `interval` since the previous poll."""
    if pending._notification_token is not None:
        receiver = client.ciba.ping_receiver()
        longest = PING_FALLBACK_INTERVALS * pending.interval
        fallback = min(pending.remaining(client.clock()), longest)
        receiver.wait(pending._notification_token, fallback)
        since = client.clock() - pending.last_poll if pending.last_poll is not None else None
        if since is not None and since < pending.interval:
            client.sleep(pending.interval - since)
        return
    client.sleep(pending.interval)
