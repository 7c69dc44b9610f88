"""Pushed authorization requests (RFC 9126): keep a request, then find it by `request_uri`.

The client sends its authorization request straight to /par, authenticated; we check it
as /authorize would and keep it. The browser then carries only `client_id` and
`request_uri`, so neither the request's size nor its contents depend on the front
channel: `authorization_details` of any length survives sign-in and consent, and no
parameter can be changed on the way.

A `request_uri` is a bearer reference: 256 bits from `secrets`, stored as a SHA-256
digest, bound to the client that pushed it (§7.3), short-lived, and answered once: the
first code, denial or error sent back for it ends it (§4 "SHOULD treat request_uri values
as one-time use"; reloading the sign-in or consent page before that still works).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from ..credentials import digest, new_secret_value
from ..models import PushedAuthorizationRequest, now
from .errors import InvalidRequestUriError, TooManyPushedRequestsError
from .extensions.authorization_request import READ_PARAMETERS

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
# RFC 9126 §2.2: "typically relatively short (e.g., between 5 and 600 seconds)". Long
# enough for a person to sign in and read the consent page; FAPI 2.0 allows up to 600.
LIFETIME_SECONDS = 300
# Client authentication travels with the push but is not part of the authorization request.
CLIENT_AUTHENTICATION_PARAMETERS = frozenset(
    {"client_secret", "client_assertion", "client_assertion_type"}
)
MAX_REQUEST_URI_LENGTH = len(REQUEST_URI_PREFIX) + 128
# Each push is a row until it is answered or expires. Past this many open at once, a
# client's pushes wait (429) rather than fill the database. A public client pushes with
# its client_id alone (anyone can push in its name), and anyone can register a client
# (RFC 7591): for both the per-address PushThrottle comes first and the smaller cap
# applies; a confidential client the operator registered is accountable for its own pushes
# and gets more room.
MAX_OPEN_PER_PUBLIC_CLIENT = 1000
MAX_OPEN_PER_CONFIDENTIAL_CLIENT = 10_000


def is_pushed_reference(value: str | None) -> bool:
    """Whether `value` has the shape of a `request_uri` this server hands out."""
    return bool(value) and str(value).startswith(REQUEST_URI_PREFIX)


def authorization_parameters(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The authorization request in a push: everything but client authentication."""
    return [(name, value) for name, value in pairs if name not in CLIENT_AUTHENTICATION_PARAMETERS]


def push(
    session: Session, client_id: str, parameters: list[tuple[str, str]], unaccountable: bool
) -> tuple[str, int]:
    """Keep a checked request; returns its `request_uri` (shown once) and lifetime."""
    _make_room(session, client_id, unaccountable)
    reference = new_secret_value()
    # Only what /authorize reads is kept: a push of unknown fields must not become a large row.
    kept = [[name, value] for name, value in parameters if name in READ_PARAMETERS]
    session.add(
        PushedAuthorizationRequest(
            reference_hash=digest(reference),
            client_id=client_id,
            parameters=kept,
            expires_at=now() + LIFETIME_SECONDS,
        )
    )
    return REQUEST_URI_PREFIX + reference, LIFETIME_SECONDS


def _make_room(session: Session, client_id: str, unaccountable: bool) -> None:
    """Drop the client's answered and expired requests (they open nothing any more: an
    unknown reference gets the same answer), then count what is left against its cap. Every
    row the client has is then counted, so the cap bounds what it can make us store."""
    moment = now()
    table = PushedAuthorizationRequest
    session.execute(
        delete(table)
        .where(table.client_id == client_id)
        .where(or_(table.used_at.is_not(None), table.expires_at <= moment))
        .execution_options(synchronize_session=False)
    )
    kept = session.execute(
        select(func.count(), func.min(table.expires_at)).where(table.client_id == client_id)
    )
    count, first_expiry = kept.one()
    cap = MAX_OPEN_PER_PUBLIC_CLIENT if unaccountable else MAX_OPEN_PER_CONFIDENTIAL_CLIENT
    if count >= cap:  # about: on PostgreSQL, pushes at the same instant may pass it together
        raise TooManyPushedRequestsError(
            max(1, (first_expiry or moment) - moment),
            "Too many open pushed requests for this client; try again later.",
        )


def _row(session: Session, request_uri: str) -> PushedAuthorizationRequest | None:
    if not is_pushed_reference(request_uri) or len(request_uri) > MAX_REQUEST_URI_LENGTH:
        return None
    reference = request_uri[len(REQUEST_URI_PREFIX) :]
    return session.scalar(
        select(PushedAuthorizationRequest).where(
            PushedAuthorizationRequest.reference_hash == digest(reference)
        )
    )


def resolve(session: Session, client_id: str | None, request_uri: str) -> MultiDict[str, str]:
    """The pushed request `request_uri` names, if `client_id` pushed it and it is still open.

    Every failure is the same error: a caller learns nothing about references it does not
    hold (whose they are, whether they ever existed).
    """
    row = _row(session, request_uri)
    moment = now()
    if row is None or row.client_id != client_id or row.used_at is not None:
        raise InvalidRequestUriError("The request_uri is unknown, already used or not yours.")
    if row.expires_at <= moment:
        raise InvalidRequestUriError("The request_uri has expired; start the request again.")
    return MultiDict([(name, value) for name, value in row.parameters])


def answer(session: Session, request_uri: str) -> bool:
    """Mark the pushed request answered; False if another response already answered it.

    One conditional UPDATE: of two approvals racing on one request_uri, one wins.
    """
    reference = request_uri[len(REQUEST_URI_PREFIX) :]
    result = session.execute(
        update(PushedAuthorizationRequest)
        .where(
            PushedAuthorizationRequest.reference_hash == digest(reference),
            PushedAuthorizationRequest.used_at.is_(None),
        )
        .values(used_at=now())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
