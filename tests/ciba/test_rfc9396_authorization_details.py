"""RFC 9396 Rich Authorization Requests at /authorize and /bc-authorize.

§2: `authorization_details` is a JSON array of objects, each with a `type`; §5: a
malformed parameter, an unknown type or an entry that fails the type's schema is
`invalid_authorization_details` (a redirect at /authorize, RFC 6749 §4.1.2.1; JSON at
/bc-authorize, CIBA §13); §7 and §9: the approved details appear in the token, the
token response and introspection; §10: discovery lists the types. The resource
(RFC 8707) is inferred from the type's resource server when absent, and must match
it when present (`invalid_target`).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from authserver.admin import AdminError, add_detail_type
from authserver.db import transaction
from authserver.models import BackchannelRequest, Consent, ResourceServer
from tests.support.db import count, issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource
from tests.support.flows import Pkce, code_params, hidden_fields, query_of
from tests.support.oauth import introspect, redeem, redirect_error, token_error

from .conftest import BROKER, TRADE, approval_form, bc_authorize, poll

ISSUER = "http://127.0.0.1:8000"


def trade(**changes) -> dict:
    entry = {**TRADE, **changes}
    return {key: value for key, value in entry.items() if value is not None}


INVALID = {
    "not_json": "[{type: trade}",
    "not_an_array": json.dumps(TRADE),
    "a_string": json.dumps("trade"),
    "empty_array": "[]",
    "entry_not_an_object": json.dumps(["trade"]),
    "entry_without_type": json.dumps([{k: v for k, v in TRADE.items() if k != "type"}]),
    "type_not_a_string": json.dumps([trade(type=7)]),
    "unknown_type": json.dumps([{"type": "wire_transfer", "amount": 10}]),
    "negative_quantity": json.dumps([trade(quantity=-10)]),
    "zero_quantity": json.dumps([trade(quantity=0)]),
    "string_quantity": json.dumps([trade(quantity="10")]),
    "fractional_quantity": json.dumps([trade(quantity=1.5)]),
    # JSON Schema's integer admits 10.0; the broker (like most code) reads it as a float and
    # would refuse every order under an approval of "10.0 shares".
    "integral_float_quantity": json.dumps([trade(quantity=10.0)]),
    "exponent_quantity": "[" + json.dumps(TRADE).replace('"quantity": 10', '"quantity": 1e1') + "]",
    "lowercase_symbol": json.dumps([trade(symbol="net")]),
    "extra_property": json.dumps([trade(note="also wire me 1000 USD")]),
    "price_zero": json.dumps([trade(limit_price=0)]),
    # RFC 8259 §6: NaN is not JSON (Python's json reads it, and NaN passes every bound).
    "price_nan": json.dumps([trade(limit_price=float("nan"))]),
    "deeply_nested": "[" * 5000 + "]" * 5000,  # under the size limit; a RecursionError, not a 500
    "missing_limit_price": json.dumps([trade(limit_price=None)]),
    "unknown_side": json.dumps([trade(side="short")]),
    "other_currency": json.dumps([trade(currency="EUR")]),
    "second_entry_invalid": json.dumps([TRADE, trade(quantity=-1)]),
    "too_many_entries": json.dumps([TRADE] * 11),
    "too_large": "[" + json.dumps(TRADE) + " " * 17000 + "]",
    # §2.2 locations: only the identifier of the resource server the token is for (the
    # type's, which is the audience); the approval page shows them as "At (API)".
    "locations_a_sandbox": json.dumps([trade(locations=["paper-trading sandbox (no real money)"])]),
    "locations_unregistered_api": json.dumps([trade(locations=["https://sandbox.example.com"])]),
    "locations_path_of_the_broker": json.dumps([trade(locations=[BROKER + "/sandbox"])]),
    "locations_broker_and_another": json.dumps(
        [trade(locations=[BROKER, "https://sandbox.example.com"])]
    ),
    "locations_empty": json.dumps([trade(locations=[])]),
    "locations_not_an_array": json.dumps([trade(locations=BROKER)]),
    # What the approval page shows must read as what the token carries: no control or
    # format characters (Python's `$` in the schema's pattern lets a final newline by).
    "symbol_with_newline": json.dumps([trade(symbol="NET\n")]),
    "symbol_with_right_to_left_override": json.dumps([trade(symbol="\u202eTEN")]),
    "zero_width_space_in_a_key": json.dumps([{**TRADE, "side\u200b": "buy"}]),
    "control_character_deep_inside": json.dumps([trade(locations=[[["\u0007"]] * 3])]),
}


@pytest.fixture
def rp(app, broker):
    return make_client(app, "web-rp", scope="openid profile portfolio:read")


@pytest.fixture
def signed_in(browser, alice):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


def written(app) -> dict[str, int]:
    return {
        **issued_counts(app),
        "consents": count(app, Consent),
        "ciba_requests": count(app, BackchannelRequest),
    }


def authorize_params(rp, pkce=None, **extra) -> dict:
    return code_params(rp.client_id, rp.redirect_uri, pkce or Pkce.new(), scope="openid", **extra)


@pytest.mark.parametrize("value", INVALID.values(), ids=INVALID.keys())
def test_invalid_details_at_authorize(app, signed_in, rp, value):
    """§5: invalid_authorization_details, sent to the redirect URI with state and iss (RFC
    9207); no consent, no code."""
    params = authorize_params(rp, authorization_details=value)
    before = written(app)
    response = signed_in.authorize(params)
    query = redirect_error(response, rp, "invalid_authorization_details", ISSUER)
    assert query["state"] == params["state"]
    assert query.get("error_description")
    assert written(app) == before


@pytest.mark.parametrize("value", INVALID.values(), ids=INVALID.keys())
def test_invalid_details_at_bc_authorize(app, client, alice, agent, value):
    """CIBA §13 with RFC 9396 §5: a JSON 400 invalid_authorization_details; nothing stored."""
    before = written(app)
    response = bc_authorize(client, agent, authorization_details=value)
    body = token_error(response, "invalid_authorization_details")
    assert body.get("error_description")
    assert written(app) == before


def test_schema_error_names_the_field(app, client, alice, agent):
    """The description says which entry and which member failed (printable ASCII only)."""
    response = bc_authorize(
        client, agent, authorization_details=json.dumps([TRADE, trade(quantity="ten")])
    )
    description = token_error(response, "invalid_authorization_details")["error_description"]
    assert "[1]" in description and "quantity" in description
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)


def test_discovery_lists_the_types(app, client, broker):
    """§10: authorization_details_types_supported lists the registered types."""
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        metadata = client.get(path).get_json()
        assert "trade" in metadata["authorization_details_types_supported"], path


def register_type(app, identifier: str, scope: str, name: str, field: dict, rendering: dict):
    """A resource `identifier` offering `scope`, with a type `name` of one required field."""
    make_resource(app, identifier, scopes=(scope,))
    spec = {
        "type": name,
        "schema": {
            "type": "object",
            "required": ["type", *field],
            "properties": {"type": {"const": name}, **field},
            "additionalProperties": False,
        },
        "rendering": rendering,
    }
    with transaction(app.extensions["authserver"].session_factory) as session:
        resource = session.scalar(
            select(ResourceServer).where(ResourceServer.identifier == identifier)
        )
        add_detail_type(session, resource, spec)


def register_note_type(app) -> None:
    """A second resource with a free-text type, to see that rendered values are escaped."""
    rendering = {"title": "Note", "summary": "Remember {memo}"}
    register_type(
        app, "https://notes.example.com", "notes", "note", {"memo": {"type": "string"}}, rendering
    )


def consent_page(signed_in, params) -> str:
    response = signed_in.client.get("/authorize", query_string=params)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    location = response.headers["Location"]
    assert location.startswith("/consent"), location
    return signed_in.client.get(location).get_data(as_text=True)


def test_consent_page_renders_details_for_people(app, signed_in, rp):
    """§2 and DESIGN: the consent screen shows the details rendered for people (summary and
    labels from the type's rendering), not raw JSON."""
    params = authorize_params(rp, authorization_details=json.dumps([TRADE]))
    page = consent_page(signed_in, params)
    assert "buy 10 NET at no more than 120.00 USD" in page
    for label, value in [
        ("Action", "buy"),
        ("Symbol", "NET"),
        ("Shares (at most)", "10"),
        ("Price limit", "120.00"),
        ("Currency", "USD"),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page, label
    assert "Broker" in page and BROKER in page


def test_every_field_the_schema_allows_is_shown(app, signed_in, rp):
    """What the person approves is what the token carries: `locations` (RFC 9396 §2.2), which
    the trade schema allows, is on the page too, not only in the token."""
    where = BROKER
    params = authorize_params(rp, authorization_details=json.dumps([trade(locations=[where])]))
    page = consent_page(signed_in, params)
    # As JSON: unambiguous, whatever characters the values hold.
    assert f"<dt>At (API)</dt><dd>[&#34;{where}&#34;]</dd>" in page


def test_sell_summary_says_the_limit_is_a_floor(app, signed_in, rp):
    """A sell's limit is the lowest acceptable price: the summary must not call it a ceiling
    (the broker refuses a sell below it), or the person approves the opposite of what
    the token allows."""
    params = authorize_params(rp, authorization_details=json.dumps([trade(side="sell")]))
    page = consent_page(signed_in, params)
    assert "sell 10 NET at no less than 120.00 USD" in page
    assert "no more than" not in page
    assert "<dt>Action</dt><dd>sell</dd>" in page


@pytest.mark.parametrize(
    "summary",
    [
        7,
        {"cases": {"buy": "buy {quantity}"}},
        {"by": "side"},
        {"by": "side", "cases": {"buy": 3}},
        {"by": "side", "cases": ["buy {quantity}"]},
    ],
    ids=["number", "no_by", "no_cases", "case_not_text", "cases_not_object"],
)
def test_registration_refuses_a_summary_the_page_cannot_show(app, summary):
    """A rendering is checked when the type is registered, not when a person is looking at
    a broken approval page."""
    spec = {
        "type": "memo",
        "schema": {"type": "object", "properties": {"type": {"const": "memo"}}},
        "rendering": {"title": "Memo", "summary": summary},
    }
    runtime = app.extensions["authserver"]
    with pytest.raises(AdminError, match="rendering.summary"):
        with transaction(runtime.session_factory) as session:
            resource = session.scalar(
                select(ResourceServer).where(ResourceServer.identifier == BROKER)
            )
            add_detail_type(session, resource, spec)


def test_first_party_client_still_shows_the_action(app, signed_in, broker):
    """A client registered with skip_consent (first party) signs people in without a consent
    page, but an action to approve (RFC 9396) is always shown: trusting the client is not
    approving what it asks to do."""
    first_party = make_client(
        app, "first-party", scope="openid profile portfolio:read", skip_consent=True
    )
    plain = signed_in.client.get("/authorize", query_string=authorize_params(first_party))
    assert plain.headers["Location"].startswith(first_party.redirect_uri)
    params = authorize_params(first_party, authorization_details=json.dumps([TRADE]))
    page = consent_page(signed_in, params)
    assert "buy 10 NET at no more than 120.00 USD" in page


def test_consent_page_escapes_details(app, signed_in, rp):
    """Values chosen by the client are text on the page, never markup."""
    register_note_type(app)
    rp_notes = make_client(app, "notes-rp", scope="openid notes")
    memo = "<script>alert(1)</script>"
    params = authorize_params(
        rp_notes, authorization_details=json.dumps([{"type": "note", "memo": memo}])
    )
    page = consent_page(signed_in, params)
    assert "Remember &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


@pytest.mark.parametrize(
    "memo", ["pay \u202e0001 DSU", "line one\nline two", "zero\u200bwidth", "bell\u0007"]
)
def test_free_text_with_control_characters_is_refused(app, signed_in, memo):
    """A type whose schema allows any string still gets no control or format characters
    onto the approval page: a right-to-left override or a line break makes the page read
    differently from what the token carries. invalid_authorization_details, no consent."""
    register_note_type(app)
    rp_notes = make_client(app, "notes-rp", scope="openid notes")
    params = authorize_params(
        rp_notes, authorization_details=json.dumps([{"type": "note", "memo": memo}])
    )
    before = written(app)
    response = signed_in.authorize(params)
    query = redirect_error(response, rp_notes, "invalid_authorization_details", ISSUER)
    assert "control characters" in query["error_description"]
    assert written(app) == before


def test_a_money_amount_beyond_any_float_is_shown_as_digits(app, signed_in):
    """A registered type whose schema sets no maximum: an integer amount too large for a
    float is shown as its digits on the consent page, not a server error."""
    rendering = {
        "title": "Payment",
        "summary": "Pay {amount}",
        "fields": [{"name": "amount", "label": "Amount", "format": "money"}],
    }
    amount = {"amount": {"type": "integer"}}
    register_type(app, "https://pay.example.com", "pay", "payment", amount, rendering)
    payer = make_client(app, "pay-rp", scope="openid pay")
    huge = 10**400
    details = json.dumps([{"type": "payment", "amount": huge}])
    page = consent_page(signed_in, authorize_params(payer, authorization_details=details))
    assert str(huge) in page


def test_approved_details_get_no_refresh_token(app, client, signed_in, rp):
    """An approval covers one action: a refresh token would mint a new token carrying the
    same `trade` entry on every refresh, each able to place one more order. So a grant
    with authorization_details gets an access token only, even for a client registered
    for refresh tokens (the same client still gets one for a plain sign-in)."""
    pkce = Pkce.new()
    params = authorize_params(rp, pkce, authorization_details=json.dumps([TRADE]))
    code = query_of(signed_in.authorize(params).headers["Location"])["code"]
    tokens = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert tokens.status_code == 200, tokens.get_json()
    assert tokens.get_json()["authorization_details"] == [TRADE]
    assert "refresh_token" not in tokens.get_json()

    plain = Pkce.new()
    code = query_of(signed_in.authorize(authorize_params(rp, plain)).headers["Location"])["code"]
    control = redeem(client, rp, code, code_verifier=plain.verifier)
    assert control.status_code == 200 and "refresh_token" in control.get_json()


def test_approved_details_in_token_response_and_introspection(app, client, signed_in, rp):
    """§7: the access token carries exactly the approved details, the token response repeats
    them (§7.1) and introspection returns them (§9.2); the resource is the type's (RFC 8707)."""
    pkce = Pkce.new()
    params = authorize_params(rp, pkce, authorization_details=json.dumps([TRADE]))
    response = signed_in.authorize(params)
    code = query_of(response.headers["Location"])["code"]
    tokens = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert tokens.status_code == 200, tokens.get_json()
    body = tokens.get_json()
    assert body["authorization_details"] == [TRADE]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["authorization_details"] == [TRADE]
    assert claims["aud"] == BROKER
    info = introspect(client, rp, body["access_token"])
    assert info["active"] is True
    assert info["authorization_details"] == [TRADE]


def test_ciba_resource_inferred_and_details_everywhere(app, client, browser, alice, agent):
    """§7 for CIBA: no `resource` sent, the broker is the audience; the details are in the
    token, the token response and introspection."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    approval_form(browser)
    body = poll(client, agent, auth_req_id).get_json()
    assert body["authorization_details"] == [TRADE]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == BROKER and claims["authorization_details"] == [TRADE]
    info = introspect(client, agent, body["access_token"])
    assert info["active"] is True and info["authorization_details"] == [TRADE]


def test_explicit_matching_resource_is_accepted(app, client, alice, agent):
    """RFC 8707 §2 with §9396: naming the type's own resource is fine."""
    response = bc_authorize(client, agent, resource=BROKER)
    assert response.status_code == 200, response.json


@pytest.fixture
def other_api(app, broker):
    return make_resource(app, "https://api.example.com", scopes=("read",))


def test_details_for_another_resource_at_bc_authorize(app, client, alice, agent, other_api):
    """RFC 8707 §2 invalid_target: the trade type belongs to the broker, not to the API named."""
    before = written(app)
    response = bc_authorize(client, agent, resource=other_api)
    token_error(response, "invalid_target")
    assert written(app) == before


def test_details_for_another_resource_at_authorize(app, signed_in, rp, other_api):
    """RFC 8707 §2 invalid_target at /authorize (a redirect with state and iss)."""
    params = authorize_params(rp, authorization_details=json.dumps([TRADE]), resource=other_api)
    before = written(app)
    redirect_error(signed_in.authorize(params), rp, "invalid_target", ISSUER)
    assert written(app) == before


def test_a_second_resource_beside_the_details_owner_at_bc_authorize(
    app, client, alice, agent, other_api
):
    """RFC 9700 §2.3 audience restriction: a token approving a trade is for the broker alone.
    Another API named beside it would receive a token it could replay at the broker."""
    before = written(app)
    response = bc_authorize(client, agent, resource=[BROKER, other_api])
    body = token_error(response, "invalid_target")
    assert body["error_description"] == (
        "The authorization_details must name exactly the resources they belong to."
    )
    assert written(app) == before


def test_a_second_resource_beside_the_details_owner_at_authorize(app, signed_in, rp, other_api):
    """The same at /authorize: a redirect with invalid_target, state and iss; nothing stored."""
    params = authorize_params(
        rp, authorization_details=json.dumps([TRADE]), resource=[BROKER, other_api]
    )
    before = written(app)
    redirect_error(signed_in.authorize(params), rp, "invalid_target", ISSUER)
    assert written(app) == before


@pytest.mark.parametrize("resource", ["https://unknown.example.com", "not a uri", BROKER + "#x"])
def test_unknown_resource_at_bc_authorize(app, client, alice, agent, resource):
    """RFC 8707 §2: an unknown or malformed resource is invalid_target."""
    before = written(app)
    token_error(bc_authorize(client, agent, resource=resource), "invalid_target")
    assert written(app) == before


def test_locations_naming_another_registered_api(app, client, alice, agent, other_api):
    """§2.2 with RFC 8707: a registered API the token would also be for (named as a second
    `resource`) is still not where a `trade` can happen: only the broker registered the
    type. invalid_authorization_details, nothing stored."""
    details = json.dumps([trade(locations=[other_api])])
    before = written(app)
    response = bc_authorize(
        client, agent, authorization_details=details, resource=[BROKER, other_api]
    )
    body = token_error(response, "invalid_authorization_details")
    assert "locations" in body["error_description"]
    assert written(app) == before


def test_locations_naming_the_broker(app, client, browser, alice, agent):
    """§2.2 and §7: locations naming the type's resource server are accepted, shown to the
    person and carried in the token whose audience is that server."""
    entry = trade(locations=[BROKER])
    response = bc_authorize(client, agent, authorization_details=json.dumps([entry]))
    assert response.status_code == 200, response.json
    browser.login("alice", DEFAULT_PASSWORD)
    page = browser.client.get("/approvals").get_data(as_text=True)
    assert f"<dt>At (API)</dt><dd>[&#34;{BROKER}&#34;]</dd>" in page
    approval_form(browser)
    body = poll(client, agent, response.json["auth_req_id"]).get_json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == BROKER and claims["authorization_details"] == [entry]


def register_bookmark_type(app) -> None:
    """A type whose schema asks for a `"format": "uri"` member."""
    make_resource(app, "https://bookmarks.example.com", scopes=("bookmarks",))
    spec = {
        "type": "bookmark",
        "schema": {
            "type": "object",
            "required": ["type", "url"],
            "properties": {
                "type": {"const": "bookmark"},
                "url": {"type": "string", "format": "uri"},
            },
            "additionalProperties": False,
        },
    }
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        resource = session.scalar(
            select(ResourceServer).where(
                ResourceServer.identifier == "https://bookmarks.example.com"
            )
        )
        add_detail_type(session, resource, spec)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [("https://example.com/a?b=c", True), ("paper-trading sandbox", False), ("/relative", False)],
)
def test_schema_formats_are_asserted(app, client, alice, agent, url, accepted):
    """A registered schema's `format` is checked, not only noted (JSON Schema 2020-12
    format-assertion): a "uri" member must be an absolute URI (RFC 3986 §4.3)."""
    register_bookmark_type(app)
    details = json.dumps([{"type": "bookmark", "url": url}])
    response = bc_authorize(client, agent, authorization_details=details)
    if accepted:
        assert response.status_code == 200, response.json
    else:
        assert "url" in token_error(response, "invalid_authorization_details")["error_description"]


def test_details_too_long_for_a_url_go_through_par(app, client, browser, alice, rp):
    """RFC 9126 §1: details that make the request too long for a URL are
    pushed; the browser carries only the reference through sign-in and consent, and the
    token covers exactly what was pushed and shown."""
    symbols = "ABCDEFGHIJ"
    details = [trade(symbol=s, quantity=n + 1, locations=[BROKER]) for n, s in enumerate(symbols)]
    pkce = Pkce.new()
    params = authorize_params(rp, pkce, authorization_details=json.dumps(details), state="s" * 1000)
    # As a URL, the sign-in page's address would pass gunicorn's request-line limit (4094).
    assert len(urlencode({"next": "/authorize?" + urlencode(params)})) > 4096
    pushed = client.post("/par", data=params, auth=rp.basic_auth)
    assert pushed.status_code == 201, pushed.get_json()
    reference = {"client_id": rp.client_id, "request_uri": pushed.get_json()["request_uri"]}

    to_login = browser.client.get("/authorize", query_string=reference)
    next_url = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]
    assert len(next_url) < 200
    back = browser.login("alice", DEFAULT_PASSWORD, next_url)
    to_consent = browser.client.get(back.headers["Location"])
    page = browser.client.get(to_consent.headers["Location"]).get_data(as_text=True)
    for n, symbol in enumerate(symbols):  # every pushed action is shown to the person
        assert f"buy {n + 1} {symbol} at no more than 120.00 USD" in page
    fields = MultiDict(hidden_fields(page) + [("decision", "approve")])
    code = query_of(browser.client.post("/consent", data=fields).headers["Location"])["code"]
    tokens = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert tokens.status_code == 200, tokens.get_json()
    assert tokens.get_json()["authorization_details"] == details
    assert query_of(to_consent.headers["Location"]) == reference
