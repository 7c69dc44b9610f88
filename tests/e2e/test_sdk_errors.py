"""Typed errors and masking in the SDK.

RFC 6749 §5.2 error bodies (and the codes CIBA Core §11/§13, RFC 8693, RFC 8707,
RFC 9396 and the token vault add) map to one exception class each, carrying `error`,
the description and the HTTP status. Credentials never appear in a repr or a trace.
"""

from __future__ import annotations

import pytest
import requests

from demo_agent.sdk import (
    AccessDenied,
    AuthClient,
    AuthorizationPending,
    ConnectionRequired,
    ExpiredToken,
    InvalidAuthorizationDetails,
    InvalidBindingMessage,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    ServerError,
    SlowDown,
    TemporarilyUnavailable,
    TokenSet,
    TransportError,
    UnauthorizedClient,
    UnknownUserId,
)
from demo_agent.sdk.errors import error_for
from demo_agent.sdk.masking import Redactor, mask, mask_fields
from tests.support.db import issued_counts

CODES = [
    ("invalid_request", InvalidRequest),
    ("invalid_client", InvalidClient),
    ("invalid_grant", InvalidGrant),
    ("unauthorized_client", UnauthorizedClient),
    ("invalid_scope", InvalidScope),
    ("invalid_target", InvalidTarget),
    ("invalid_authorization_details", InvalidAuthorizationDetails),
    ("access_denied", AccessDenied),
    ("authorization_pending", AuthorizationPending),
    ("slow_down", SlowDown),
    ("expired_token", ExpiredToken),
    ("unknown_user_id", UnknownUserId),
    ("invalid_binding_message", InvalidBindingMessage),
    ("connection_required", ConnectionRequired),
    ("temporarily_unavailable", TemporarilyUnavailable),
    ("server_error", ServerError),
]


@pytest.mark.parametrize(("code", "cls"), CODES)
def test_each_rfc_error_code_has_its_class(code, cls):
    """RFC 6749 §5.2: `error` selects the class; description and status are kept."""
    error = error_for({"error": code, "error_description": "why"}, 400)
    assert type(error) is cls and isinstance(error, OAuthError)
    assert (error.error, error.description, error.status) == (code, "why", 400)
    assert str(error) == f"{code}: why"


def test_unknown_codes_stay_readable():
    """RFC 6749 §8.5: an extension code the SDK does not know keeps its code."""
    error = error_for({"error": "interaction_required"}, 400)
    assert type(error) is OAuthError and error.error == "interaction_required"


def test_connection_required_carries_the_interrupt_fields():
    """DESIGN token vault: the body's connection, reason, scope and connect_uri."""
    body = {
        "error": "connection_required",
        "connection": "calendar",
        "reason": "not_connected",
        "scope": "calendar.freebusy",
        "connect_uri": "http://127.0.0.1:8000/connections/calendar/connect",
    }
    error = error_for(body, 400)
    assert isinstance(error, ConnectionRequired)
    assert (error.connection, error.reason, error.scope) == (
        "calendar",
        "not_connected",
        "calendar.freebusy",
    )
    assert error.connect_uri.endswith("/connections/calendar/connect")


def test_live_errors_arrive_typed_with_status(scene):
    """RFC 6749 §5.2 from the server: a bad refresh token and an unknown grant type."""
    client = scene.client()
    before = issued_counts(scene.server.app)
    with pytest.raises(InvalidGrant) as bad_refresh:
        client.token_request({"grant_type": "refresh_token", "refresh_token": "not-a-token"})
    with pytest.raises(OAuthError) as unsupported:
        client.token_request({"grant_type": "urn:example:nothing"})
    assert bad_refresh.value.status == 400 and bad_refresh.value.description
    assert unsupported.value.error == "unsupported_grant_type"
    assert issued_counts(scene.server.app) == before


def test_unreachable_server_is_a_transport_error():
    """A refused connection names the request, never a credential."""
    client = AuthClient("http://127.0.0.1:9", "agent", "s3cret-value-123")
    with pytest.raises(TransportError) as raised:
        client.metadata  # noqa: B018 (the property fetches discovery)
    assert "s3cret" not in str(raised.value)
    client.close()


def test_reprs_mask_every_secret():
    """RFC 6750 §5.3: bearer credentials stay out of reprs (and so out of logs)."""
    tokens = TokenSet("access-AAAAAAAAAAA", refresh_token="refresh-BBBBBBBB", id_token="id-CCCCCCC")
    session = requests.Session()
    client = AuthClient("http://127.0.0.1:9", "agent", "client-secret-DDDD", session=session)
    shown = repr(tokens) + repr(client)
    for secret in ("access-AAAAAAAAAAA", "refresh-BBBBBBBB", "id-CCCCCCC", "client-secret-DDDD"):
        assert secret not in shown
    assert mask("refresh-BBBBBBBB") in shown
    client.close()


def test_mask_fields_and_redactor():
    """Credential fields are masked wherever they nest; known secrets are scrubbed."""
    body = {"access_token": "t1-secret-value", "scope": "a b", "nested": [{"code": "c-secret-1"}]}
    masked = mask_fields(body)
    assert masked["scope"] == "a b"
    assert masked["access_token"].startswith("<redacted sha256:")
    assert masked["nested"][0]["code"].startswith("<redacted sha256:")
    redactor = Redactor()
    redactor.add("t1-secret-value", None, "short")
    scrubbed = redactor.scrub("got t1-secret-value and short")
    assert scrubbed == f"got {mask('t1-secret-value')} and short"
