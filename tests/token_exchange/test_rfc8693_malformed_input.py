"""Malformed token-exchange requests change nothing and never break the server.

RFC 6749 §3.2 (parameters sent once, form-encoded bodies) and §5.2 (JSON errors);
RFC 8693 §2.1 (which parameters are required, and which may repeat: `audience` and
`resource`) and §2.2.2 (`invalid_request`, `invalid_target`). Each parameter of a valid
delegated exchange is removed, repeated, oversized, not UTF-8, given a NUL or unusual
unicode. A refused request issues nothing; ACCEPTED lists what is accepted and why.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from authserver.admin import TOKEN_EXCHANGE
from tests.support.db import audit_events, issued_counts
from tests.support.responses import assert_json_error, assert_no_leak

from .conftest import API, SUBJECT_ACCESS

PARAMS = (
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "audience",
    "scope",
)
MUTATIONS = {
    "missing": lambda value: [],
    "duplicated": lambda value: [value, value],
    "array": lambda value: [value, "other-value"],
    "size_10k": lambda value: ["A" * 10 * 1024],
    "size_100k": lambda value: ["A" * 100 * 1024],
    "non_utf8": lambda value: [value.encode() + b"\xff\xfe\xc3("],
    "nul": lambda value: [value + "\x00x"],
    "unicode": lambda value: [value + "\u202e\u2603\u00e9\U0001f600"],
}
# (parameter, mutation): why the exchange still succeeds.
ACCEPTED = {
    ("scope", "missing"): "§2.1 scope is OPTIONAL: subject ∩ client ∩ resource",
    ("requested_token_type", "missing"): "§2.1 OPTIONAL: an access token by default",
    ("audience", "duplicated"): "§2.1 audience MAY repeat; the same value twice names one target",
}
# The RFC error when a parameter is missing, or for every other refused mutation.
MISSING = {
    "grant_type": "invalid_request",
    "subject_token": "invalid_request",
    "subject_token_type": "invalid_request",
    "actor_token": "invalid_request",  # §2.1: actor_token_type MUST NOT come without it
    "actor_token_type": "invalid_request",
    "audience": "invalid_target",
}


def _valid(client, setup):
    actor = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=setup.agent.basic_auth
    ).json["access_token"]
    return {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": setup.tokens["access_token"],
        "subject_token_type": SUBJECT_ACCESS,
        "actor_token": actor,
        "actor_token_type": SUBJECT_ACCESS,
        "requested_token_type": SUBJECT_ACCESS,
        "audience": API,
        "scope": "portfolio:read",
    }


def _body(params, param, mutation):
    pairs = []
    for name, value in params.items():
        values = MUTATIONS[mutation](value) if name == param else [value]
        pairs.extend((name, item) for item in values)
    return urlencode(pairs).encode("ascii")


@pytest.mark.parametrize("mutation", list(MUTATIONS))
@pytest.mark.parametrize("param", PARAMS)
def test_parameter_mutations(app, client, setup, param, mutation):
    """RFC 6749 §3.2/§5.2, RFC 8693 §2.1/§2.2.2: refused cleanly, nothing issued."""
    params = _valid(client, setup)
    before = issued_counts(app), len(audit_events(app, "token.exchanged"))
    response = client.post(
        "/token",
        data=_body(params, param, mutation),
        content_type="application/x-www-form-urlencoded",
        auth=setup.agent.basic_auth,
    )
    assert_no_leak(response)
    if (param, mutation) in ACCEPTED:
        assert response.status_code == 200, response.json
        return
    expected = MISSING.get(param) if mutation == "missing" else None
    if mutation in ("duplicated", "array") and param != "audience":
        expected = "invalid_request"  # RFC 6749 §3.2: MUST NOT be included more than once
    assert_json_error(response, expected)
    assert (issued_counts(app), len(audit_events(app, "token.exchanged"))) == before


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", None]
)
def test_wrong_content_type(app, client, setup, content_type):
    """RFC 6749 §3.2: the token endpoint takes application/x-www-form-urlencoded only."""
    params = _valid(client, setup)
    before = issued_counts(app)
    response = client.post(
        "/token",
        data=urlencode(params).encode(),
        content_type=content_type,
        auth=setup.agent.basic_auth,
    )
    assert_json_error(response, "invalid_request")
    assert issued_counts(app) == before


def test_parameters_in_the_url_are_refused(app, client, setup):
    """RFC 6749 §3.2: parameters go in the body; one in the URL (where it would be logged)
    is refused even when the body is complete."""
    params = _valid(client, setup)
    before = issued_counts(app)
    response = client.post(
        "/token?" + urlencode({"scope": params["scope"]}),
        data=params,
        auth=setup.agent.basic_auth,
    )
    assert_json_error(response, "invalid_request")
    assert issued_counts(app) == before
