"""Linking an account: authorization code + PKCE + state against the upstream.

`begin` records a connect state (state as a digest, PKCE verifier sealed) and
returns the upstream authorization URL; `consume` checks and uses up the state
when the browser comes back (a forged, expired, replayed or someone else's state
fails the same way); `check_issuer` applies RFC 9207 to the response; the caller
then exchanges the code upstream and stores the account with
`accounts.store_account`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault import upstream
from vault.accounts import connection_secret_aad, upstream_client
from vault.envelope import associated_data, seal, unseal
from vault.errors import ConnectFailed, VaultError
from vault.keyring import KeyRing
from vault.models import Connection, ConnectState

STATE_TTL_SECONDS = 600
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
# RFC 6749 §3.3 scope-token: printable ASCII except space, the double quote and backslash.
SCOPE_CHARS = {chr(c) for c in range(0x21, 0x7F)} - {'"', "\\"}
# Set by `begin` itself; an extra parameter of the same name would replace or clash with it.
RESERVED_AUTHORIZE_PARAMS = frozenset(
    {
        "client_id",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
    }
)


@dataclass(frozen=True)
class ConsumedState:
    verifier: str
    scopes: list[str]
    return_to: str

    def __repr__(self) -> str:
        return f"ConsumedState(scopes={self.scopes!r}, return_to={self.return_to!r})"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _state_aad(state_hash: str, user_id: str, connection: str) -> bytes:
    return associated_data("vault_connect_state", state_hash, user_id, connection)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(label: str, url: str) -> None:
    """RFC 6749 §3.1/§3.2: an absolute URL without fragment; TLS (§3.1, §3.2) except on
    loopback, where a local test provider runs. Messages never repeat the URL: it may
    carry a password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        host = None
    # urlsplit drops tabs and newlines silently; such a URL is refused, not repaired.
    controls = any(ord(char) < 0x21 or ord(char) == 0x7F for char in url)
    if host is None or parts.scheme not in ("https", "http") or "#" in url or controls:
        raise VaultError(f"{label} must be an absolute https URL without fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise VaultError(f"{label} must use https (http only on loopback)")
    if parts.username is not None or parts.password is not None:
        raise VaultError(f"{label} must not carry credentials")


def create_connection(
    session: Session,
    keyring: KeyRing,
    clock: Callable[[], float],
    *,
    name: str,
    display_name: str,
    client_id: str,
    client_secret: str | None,
    authorize_url: str,
    token_url: str,
    revocation_url: str | None,
    discovery_url: str | None,
    scopes: list[str],
    default_scopes: list[str] | None = None,
    auth_method: str = "client_secret_basic",
    authorize_params: dict[str, Any] | None = None,
    allowed_clients: list[str] | None = None,
    issuer: str | None = None,
    require_iss: bool = False,
) -> Connection:
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise VaultError("connection name: 1-64 of a-z 0-9 - _")
    if session.get(Connection, name) is not None:
        raise VaultError(f"connection {name!r} already exists")
    if auth_method not in ("client_secret_basic", "client_secret_post", "none"):
        raise VaultError("auth method must be client_secret_basic, client_secret_post or none")
    defaults = default_scopes if default_scopes is not None else list(scopes)
    if not set(defaults) <= set(scopes):
        raise VaultError("default scopes must be among the connection's scopes")
    bad_scopes = [scope for scope in scopes if not scope or not set(scope) <= SCOPE_CHARS]
    if not scopes or bad_scopes:
        raise VaultError("scopes: one or more RFC 6749 scope tokens (no spaces or quotes)")
    clashing = sorted(set(authorize_params or {}) & RESERVED_AUTHORIZE_PARAMS)
    if clashing:
        raise VaultError(f"authorize parameters set by the vault itself: {', '.join(clashing)}")
    for label, url in (
        ("authorize URL", authorize_url),
        ("token URL", token_url),
        ("revocation URL", revocation_url),
        ("discovery URL", discovery_url),
        ("issuer", issuer),
    ):
        if url is not None:
            check_endpoint(label, url)
    if issuer is not None and (urlsplit(issuer).query or len(issuer) > 2000):
        raise VaultError("issuer must be a URL without query or fragment (RFC 8414 §2)")
    if require_iss and issuer is None:
        raise VaultError("requiring iss in authorization responses needs the issuer")
    connection = Connection(
        name=name,
        display_name=display_name,
        client_id=client_id,
        client_secret_sealed=seal(keyring, client_secret.encode(), connection_secret_aad(name))
        if client_secret
        else None,
        authorize_url=authorize_url,
        token_url=token_url,
        revocation_url=revocation_url,
        discovery_url=discovery_url,
        issuer=issuer,
        require_iss=require_iss,
        scopes=list(scopes),
        default_scopes=defaults,
        token_endpoint_auth_method=auth_method,
        authorize_params=dict(authorize_params or {}),
        allowed_clients=list(allowed_clients or []),
        created_at=int(clock()),
    )
    session.add(connection)
    return connection


def begin(
    session: Session,
    keyring: KeyRing,
    clock: Callable[[], float],
    connection: Connection,
    user_id: str,
    scopes: list[str],
    return_to: str,
    redirect_uri: str,
) -> str:
    """Record a connect state and return the upstream authorization URL to send the user to."""
    wanted = list(dict.fromkeys(scopes or connection.default_scopes))
    if not set(wanted) <= set(connection.scopes):
        raise VaultError("the connection does not offer these scopes")
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    state_hash = _digest(state)
    session.add(
        ConnectState(
            state_hash=state_hash,
            user_id=user_id,
            connection_name=connection.name,
            verifier_sealed=seal(
                keyring, verifier.encode(), _state_aad(state_hash, user_id, connection.name)
            ),
            scopes=wanted,
            return_to=return_to,
            expires_at=int(clock()) + STATE_TTL_SECONDS,
        )
    )
    client = upstream_client(keyring, connection)
    return upstream.authorization_url(
        client, redirect_uri, wanted, state, verifier, dict(connection.authorize_params)
    )


def consume(
    session: Session,
    keyring: KeyRing,
    clock: Callable[[], float],
    connection: Connection,
    user_id: str,
    state: str,
) -> ConsumedState:
    """Use up the state of a callback; any mismatch is the same ConnectFailed."""
    if not state or len(state) > 512:
        raise ConnectFailed("missing or malformed state")
    state_hash = _digest(state)
    row = session.scalar(
        select(ConnectState).where(ConnectState.state_hash == state_hash).with_for_update()
    )
    moment = int(clock())
    if (
        row is None
        or row.consumed_at is not None
        or row.expires_at <= moment
        or row.user_id != user_id
        or row.connection_name != connection.name
    ):
        raise ConnectFailed("unknown, expired or already used state")
    row.consumed_at = moment
    verifier = unseal(
        keyring, row.verifier_sealed, _state_aad(state_hash, user_id, connection.name)
    ).decode()
    return ConsumedState(verifier, list(row.scopes), row.return_to)


def check_issuer(connection: Connection, iss: str | None) -> None:
    """RFC 9207 §2.4: an `iss` in the authorization response must be, by simple string
    comparison, the issuer the request was sent to; a provider that promises `iss` and
    leaves it out is refused too. Either way the response (and its code) is not used: it
    may come from another provider mixed up with this one (RFC 9700 §4.4).

    A connection registered without an issuer cannot compare; the callback URL of each
    connection is its own (RFC 9700 §4.4.2.2) and carries the state bound to it."""
    if iss is None:
        if connection.require_iss:
            raise ConnectFailed("the provider always sends iss, and this response has none")
        return
    if connection.issuer is not None and iss != connection.issuer:
        raise ConnectFailed("the response names another issuer")


def discovered_issuer(discovery_url: str, document: dict[str, Any]) -> str:
    """RFC 8414 §3.3 / OIDC Discovery §4.3: the document's `issuer` must be the identifier
    its URL was built from, or nothing in the document may be used (another provider's
    metadata served here would otherwise pass as this one's)."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise VaultError("the discovery document names no issuer")
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    built = {
        f"{origin}/.well-known/oauth-authorization-server{path}",  # RFC 8414 §3.1
        f"{origin}{path}/.well-known/openid-configuration",  # OIDC Discovery §4
        f"{origin}{path}/.well-known/oauth-authorization-server",  # widely deployed
    }
    if parts.query or parts.fragment or discovery_url not in built:
        raise VaultError("the discovery document's issuer does not match its URL")
    return issuer


def purge_states(session: Session, now: float | None = None) -> int:
    moment = int(now if now is not None else time.time())
    result = session.execute(delete(ConnectState).where(ConnectState.expires_at < moment))
    return int(getattr(result, "rowcount", 0) or 0)
