"""Pushed authorization requests, RFC 9126, at POST /par and at /authorize.

§2: the client authenticates as at the token endpoint and pushes the request form
encoded; §2.1: `request_uri` MUST NOT be pushed, and the request is validated as
/authorize validates it; §2.2: 201 with `request_uri` and `expires_in`; §2.3: errors
as JSON, never redirects; §4: /authorize takes `client_id` and `request_uri`, checks
the reference was issued to that client, uses only the pushed parameters and answers
a reference once; §5: discovery names the endpoint. Every refusal writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import update
from werkzeug.datastructures import MultiDict

from authserver.db import transaction
from authserver.housekeeping import purge
from authserver.models import AuthorizationCode, Consent, PushedAuthorizationRequest, now
from authserver.oauth import par
from authserver.oauth.extensions.authorization_request import READ_PARAMETERS
from authserver.oauth.par import REQUEST_URI_PREFIX
from authserver.ratelimit import PushThrottle
from tests.support.apps import build_test_app, reset_database
from tests.support.db import audit_events, count, issued_counts, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_user,
)
from tests.support.flows import Browser, Pkce, code_params, csrf_token, hidden_fields, query_of
from tests.support.oauth import error_page, last_refusal, redeem, token_error


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", scope="openid profile email")


@pytest.fixture
def other_rp(app):
    return make_client(app, "other-rp", scope="openid profile email")


@pytest.fixture
def native(app):
    return make_public_client(app, "native", scope="openid profile")


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def signed_in(app, browser, alice):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def request_params(rp, pkce=None, **extra):
    return code_params(rp.client_id, rp.redirect_uri, pkce or Pkce.new(), **extra)


def push(client, rp, params=None, **kwargs):
    """POST /par as `rp` (Basic for a confidential client, client_id for a public one)."""
    data = request_params(rp) if params is None else params
    if rp.client_secret:
        return client.post("/par", data=data, auth=rp.basic_auth, **kwargs)
    return client.post("/par", data=data, **kwargs)


def pushed_uri(response) -> str:
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return str(body["request_uri"])


def authorize_by_reference(browser, client_id, request_uri, **extra):
    params = {"client_id": client_id, "request_uri": request_uri, **extra}
    return browser.client.get("/authorize?" + urlencode(params))


def approve(browser, response):
    """Follow a redirect to the consent page and approve; the final response."""
    location = response.headers.get("Location", "")
    assert response.status_code == 302 and location.startswith("/consent"), location
    page = browser.client.get(location).get_data(as_text=True)
    fields = MultiDict(hidden_fields(page) + [("decision", "approve")])
    return browser.client.post("/consent", data=fields)


def pushed_count(app) -> int:
    return count(app, PushedAuthorizationRequest)


# §2.2 and §4: the whole flow.


def test_pushed_request_gives_a_code_for_the_pushed_parameters(app, client, signed_in, rp, issuer):
    """§2.2: 201, a request_uri URN and its lifetime; §4: /authorize with it issues a code
    carrying the pushed state, redeemable with the pushed PKCE challenge's verifier."""
    pkce = Pkce.new()
    params = request_params(rp, pkce, scope="openid email")
    response = push(client, rp, params)
    request_uri = pushed_uri(response)
    assert request_uri.startswith(REQUEST_URI_PREFIX)
    assert response.get_json()["expires_in"] == 300

    final = approve(signed_in, authorize_by_reference(signed_in, rp.client_id, request_uri))
    query = query_of(final.headers["Location"])
    assert final.headers["Location"].startswith(rp.redirect_uri)
    assert query["state"] == params["state"] and query["iss"] == issuer
    tokens = redeem(client, rp, query["code"], code_verifier=pkce.verifier)
    assert tokens.status_code == 200, tokens.get_json()
    assert tokens.get_json()["scope"] == "openid email"
    assert [row.outcome for row in audit_events(app, "par.pushed")] == ["success"]


def test_public_client_pushes_with_its_client_id(app, client, signed_in, native):
    """§2: a public client identifies itself with client_id, as at the token endpoint."""
    request_uri = pushed_uri(push(client, native))
    response = authorize_by_reference(signed_in, native.client_id, request_uri)
    assert "code" in query_of(approve(signed_in, response).headers["Location"])


def test_client_secret_post_is_accepted(app, client, other_rp):
    """§2: any authentication method the client registered for the token endpoint."""
    post_client = make_client(app, "post-rp", auth_method="client_secret_post")
    data = {**request_params(post_client), "client_secret": post_client.client_secret}
    pushed_uri(client.post("/par", data=data))
    (row,) = rows(app, PushedAuthorizationRequest)
    assert "client_secret" not in dict(row.parameters)  # authentication is not the request


def test_the_reference_is_stored_only_as_a_digest(app, client, rp):
    """§7.3: a bearer reference; the database holds its SHA-256, as for codes and tokens."""
    request_uri = pushed_uri(push(client, rp))
    reference = request_uri[len(REQUEST_URI_PREFIX) :]
    assert len(reference) >= 43  # 256 bits, base64url
    (row,) = rows(app, PushedAuthorizationRequest)
    assert row.reference_hash == hashlib.sha256(reference.encode()).hexdigest()
    assert reference not in json.dumps(row.parameters)


def test_a_long_request_survives_sign_in(app, client, browser, alice, rp):
    """What PAR is for: the browser carries a short reference, so a request too long for a
    URL (here a 2,000-character state and a 500-character nonce) comes back after sign-in."""
    params = request_params(rp, state="s" * 2000, nonce="n" * 500)
    request_uri = pushed_uri(push(client, rp, params))
    to_login = authorize_by_reference(browser, rp.client_id, request_uri)
    assert to_login.status_code == 302
    next_url = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]
    assert len(next_url) < 200 and "s" * 50 not in next_url

    signed = Browser(browser.client).login("alice", DEFAULT_PASSWORD, next_url)
    back = browser.client.get(signed.headers["Location"])
    query = query_of(approve(browser, back).headers["Location"])
    assert query["state"] == "s" * 2000 and "code" in query


def test_reloading_the_consent_page_keeps_the_request(app, client, signed_in, rp):
    """§4 "MAY allow for duplicate requests due to a user reloading": until it is answered."""
    request_uri = pushed_uri(push(client, rp))
    first = authorize_by_reference(signed_in, rp.client_id, request_uri)
    again = authorize_by_reference(signed_in, rp.client_id, request_uri)
    assert first.headers["Location"] == again.headers["Location"]
    assert "code" in query_of(approve(signed_in, again).headers["Location"])


def test_denying_answers_the_request(app, client, signed_in, rp, issuer):
    request_uri = pushed_uri(push(client, rp))
    location = authorize_by_reference(signed_in, rp.client_id, request_uri).headers["Location"]
    page = signed_in.client.get(location).get_data(as_text=True)
    fields = MultiDict(hidden_fields(page) + [("decision", "deny")])
    denied = signed_in.client.post("/consent", data=fields)
    assert query_of(denied.headers["Location"])["error"] == "access_denied"
    error_page(authorize_by_reference(signed_in, rp.client_id, request_uri))


def test_discovery_names_the_endpoint(client, issuer):
    """§5: pushed_authorization_request_endpoint; PAR is offered, not required."""
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["pushed_authorization_request_endpoint"] == f"{issuer}/par"
    assert metadata["require_pushed_authorization_requests"] is False
    oauth = client.get("/.well-known/oauth-authorization-server").get_json()
    assert oauth["pushed_authorization_request_endpoint"] == f"{issuer}/par"


# §2.1 and §2.3: what /par refuses. JSON errors, never a redirect, no row.


def refused(app, response, error, status=400):
    body = token_error(response, error, status)
    assert "Location" not in response.headers
    assert pushed_count(app) == 0
    return body


def test_request_uri_in_a_push_is_refused(app, client, rp):
    """§2.1: "The request_uri authorization request parameter ... MUST NOT be provided"."""
    params = {**request_params(rp), "request_uri": REQUEST_URI_PREFIX + "x" * 43}
    refused(app, push(client, rp, params), "invalid_request")
    assert last_refusal(app, "par.pushed") == "invalid_request"
    # The audit row says what went wrong, and nothing that does not apply here.
    assert audit_events(app, "par.pushed")[-1].details == {"error": "invalid_request"}


@pytest.mark.parametrize("auth", [None, ("web-rp", "wrong secret"), ("no-such-client", "x")])
def test_confidential_client_must_authenticate(app, client, rp, auth):
    """§2: "The AS MUST ... authenticate the client" (401 invalid_client, as at /token)."""
    response = client.post("/par", data=request_params(rp), auth=auth)
    body = refused(app, response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic") or auth is None, body


def test_client_id_must_be_the_authenticated_client(app, client, rp, other_rp):
    """§2.1: the request's client_id is the client that authenticated."""
    params = {**request_params(rp), "client_id": other_rp.client_id}
    refused(app, push(client, rp, params), "invalid_request")


def test_unregistered_redirect_uri_is_json_not_a_redirect(app, client, rp):
    """§2.1 and §2.4: validated as at /authorize; §2.3: the error goes to the pushing client."""
    params = {**request_params(rp), "redirect_uri": "https://attacker.example.com/cb"}
    refused(app, push(client, rp, params), "invalid_request")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"resource": "https://unknown.example.com"}, "invalid_target"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ],
)
def test_a_request_authorize_would_refuse_is_refused_when_pushed(
    app, client, native, change, error
):
    """§2.1: "The AS MUST validate the request the same way as at the authorization
    endpoint" (PKCE S256 for a public client, known scopes, RFC 8707, OIDC)."""
    params = {**request_params(native), **change}
    refused(app, push(client, native, {k: v for k, v in params.items() if v is not None}), error)


@pytest.mark.parametrize(
    "how",
    ["json_body", "query_parameters", "repeated_state", "get"],
)
def test_malformed_pushes_are_refused(app, client, rp, how):
    """§2: POST, application/x-www-form-urlencoded, parameters once, in the body."""
    params = request_params(rp)
    if how == "json_body":
        response = client.post("/par", json=params, auth=rp.basic_auth)
    elif how == "query_parameters":
        response = client.post("/par?" + urlencode(params), auth=rp.basic_auth)
    elif how == "repeated_state":
        data = MultiDict([*params.items(), ("state", "again")])
        response = client.post("/par", data=data, auth=rp.basic_auth)
    else:
        response = client.get("/par?" + urlencode(params), auth=rp.basic_auth)
        assert response.status_code == 405
        assert pushed_count(app) == 0
        return
    refused(app, response, "invalid_request")


# §4 and §7.3: what /authorize refuses. A page (the redirect URI is not trusted), no code.


def refused_at_authorize(app, send):
    """`send()` is refused with an error page, and issues nothing (counted around it)."""
    before = issued_counts(app)
    page = error_page(send())
    assert last_refusal(app, "authorize") == "invalid_request_uri"
    assert issued_counts(app) == before
    return page


def test_a_reference_works_only_for_the_client_that_pushed_it(app, client, signed_in, rp, other_rp):
    """§4: the AS "MUST ... ensure that the request_uri was issued to the client_id"."""
    request_uri = pushed_uri(push(client, rp))
    refused_at_authorize(
        app, lambda: authorize_by_reference(signed_in, other_rp.client_id, request_uri)
    )
    without_client = "/authorize?" + urlencode({"request_uri": request_uri})
    refused_at_authorize(app, lambda: signed_in.client.get(without_client))


def test_an_unknown_reference_is_refused(app, client, signed_in, rp):
    push(client, rp)
    unknown = (REQUEST_URI_PREFIX + "x" * 43, REQUEST_URI_PREFIX, REQUEST_URI_PREFIX + "y" * 500)
    for value in unknown:
        refused_at_authorize(
            app, lambda value=value: authorize_by_reference(signed_in, rp.client_id, value)
        )


def test_an_expired_reference_is_refused(app, client, signed_in, rp, runtime):
    """§2.2: expires_in; past it the reference opens nothing."""
    request_uri = pushed_uri(push(client, rp))
    with transaction(runtime.session_factory) as session:
        session.execute(update(PushedAuthorizationRequest).values(expires_at=now() - 1))
    page = refused_at_authorize(
        app, lambda: authorize_by_reference(signed_in, rp.client_id, request_uri)
    )
    assert "expired" in page


def test_a_reference_is_answered_once(app, client, signed_in, rp):
    """§4: "SHOULD treat request_uri values as one-time use": once a code went back, the
    reference is spent, and a replayed consent form gets no second code."""
    request_uri = pushed_uri(push(client, rp))
    location = authorize_by_reference(signed_in, rp.client_id, request_uri).headers["Location"]
    page = signed_in.client.get(location).get_data(as_text=True)
    fields = MultiDict(hidden_fields(page) + [("decision", "approve")])
    assert "code" in query_of(signed_in.client.post("/consent", data=fields).headers["Location"])
    codes = issued_counts(app)["authorization_codes"]

    # The form again, with a fresh CSRF token: the reference is spent before anything is read.
    fields["csrf_token"] = csrf_token(signed_in.client.get("/login").get_data(as_text=True))
    refused_at_authorize(app, lambda: signed_in.client.post("/consent", data=fields))
    refused_at_authorize(app, lambda: authorize_by_reference(signed_in, rp.client_id, request_uri))
    assert issued_counts(app)["authorization_codes"] == codes


def test_parameters_beside_the_reference_are_ignored(app, client, signed_in, rp):
    """§4: the request is the pushed one; a redirect_uri or scope added to the URL on the
    way (by the person or anyone who handled the link) changes nothing."""
    request_uri = pushed_uri(push(client, rp, request_params(rp, scope="openid")))
    response = authorize_by_reference(
        signed_in,
        rp.client_id,
        request_uri,
        redirect_uri="https://attacker.example.com/cb",
        scope="openid profile email",
        state="replaced",
    )
    final = approve(signed_in, response)
    assert final.headers["Location"].startswith(rp.redirect_uri)
    assert query_of(final.headers["Location"])["state"] != "replaced"
    (code,) = rows(app, AuthorizationCode)
    assert code.scope == "openid" and code.redirect_uri == rp.redirect_uri


def test_a_request_uri_that_is_not_ours_is_still_unsupported(app, signed_in, rp, issuer):
    """OIDC Core §6: request objects by reference (JAR) are not supported."""
    params = {**request_params(rp), "request_uri": "https://rp.example.com/request.jwt"}
    response = signed_in.client.get("/authorize?" + urlencode(params))
    assert query_of(response.headers["Location"])["error"] == "request_uri_not_supported"


def test_housekeeping_removes_expired_pushed_requests(app, client, rp, runtime):
    pushed_uri(push(client, rp))
    pushed_uri(push(client, rp))
    with transaction(runtime.session_factory) as session:
        first = session.query(PushedAuthorizationRequest).first()
        first.expires_at = now() - 2 * 3600  # past the grace period
    report = purge(runtime, unused_days=90)
    assert report["pushed_authorization_requests"] == 1
    assert pushed_count(app) == 1


def test_of_two_answers_racing_only_one_counts(app, client, rp, runtime):
    """§4 one-time use: the answer is one conditional UPDATE on an unanswered row, so a
    second answer (the loser of a race, below) finds it answered and changes nothing."""
    request_uri = pushed_uri(push(client, rp))
    with transaction(runtime.session_factory) as session:
        assert par.answer(session, request_uri) is True
    with transaction(runtime.session_factory) as session:
        assert par.answer(session, request_uri) is False


def test_a_client_with_too_many_open_requests_waits(app, client, signed_in, native, monkeypatch):
    """§2.3: 429 when a client pushes beyond what the server allows. A public client pushes
    with its client_id alone, so the cap on its stored requests bounds what anyone can make
    the server keep in its name; an answered request frees its place."""
    monkeypatch.setattr(par, "MAX_OPEN_PER_PUBLIC_CLIENT", 2)
    first = pushed_uri(push(client, native))
    pushed_uri(push(client, native))
    response = push(client, native)
    body = token_error(response, "invalid_request", 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 300, body
    assert pushed_count(app) == 2

    approve(signed_in, authorize_by_reference(signed_in, native.client_id, first))
    pushed_uri(push(client, native))
    assert pushed_count(app) == 2  # the answered one is gone, not merely not counted


def test_expired_requests_make_room_and_are_removed(app, client, native, runtime, monkeypatch):
    """Every stored row counts against the cap; the client's expired ones are deleted when
    it pushes, so they neither block it nor wait for the hourly purge."""
    monkeypatch.setattr(par, "MAX_OPEN_PER_PUBLIC_CLIENT", 1)
    pushed_uri(push(client, native))
    with transaction(runtime.session_factory) as session:
        session.execute(update(PushedAuthorizationRequest).values(expires_at=now() - 1))
    pushed_uri(push(client, native))
    (row,) = rows(app, PushedAuthorizationRequest)
    assert row.expires_at > now()


def test_unauthenticated_pushes_are_limited_per_address(app, client, native, rp, monkeypatch):
    """A public client's push proves nothing about who sent it: past the per-address limit
    (AUTHSERVER_PAR_RATE_LIMIT) 429 with Retry-After; confidential clients, which
    authenticate, are not counted; a flood is one audit row."""
    storage = app.extensions["push_throttle"]._limiter.storage
    monkeypatch.setitem(app.extensions, "push_throttle", PushThrottle(storage, "2/hour"))
    pushed_uri(push(client, native))
    pushed_uri(push(client, native))
    for _ in range(3):
        response = push(client, native)
        token_error(response, "invalid_request", 429)
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert pushed_count(app) == 2
    for _ in range(3):
        pushed_uri(push(client, rp))
    outcomes = [row.outcome for row in audit_events(app, "par.pushed")]
    assert outcomes.count("throttled") == 1 and outcomes.count("success") == 5
    assert len(outcomes) == 6  # the three throttled pushes are that one row, nothing more


def test_only_authorization_parameters_are_kept(app, client, rp):
    """RFC 6749 §3.1: unknown parameters are ignored, and so not stored."""
    params = {**request_params(rp), "junk": "x" * 20_000, "login_hint": "alice"}
    pushed_uri(push(client, rp, params))
    (row,) = rows(app, PushedAuthorizationRequest)
    assert {name for name, _ in row.parameters} <= READ_PARAMETERS
    assert "junk" not in dict(row.parameters)


def test_an_oversized_push_is_refused(app, client, rp):
    """§2.3: "413 Payload Too Large", as JSON, nothing stored."""
    params = {**request_params(rp), "junk": "x" * 40_000}
    refused(app, push(client, rp, params), "invalid_request", 413)


def test_the_size_of_a_push_is_counted_in_bytes(app, client, rp):
    """§2.3: the bound is on bytes: 9,000 emoji are 9,000 characters but 36,000 bytes
    (and more once stored), refused as a push of 36,000 ASCII characters is."""
    params = {**request_params(rp), "login_hint": "\N{GRINNING FACE}" * 9000}
    refused(app, push(client, rp, params), "invalid_request", 413)


def test_an_overlong_id_token_hint_is_refused(app, client, rp):
    """A pushed request keeps its id_token_hint until /authorize reads it: one longer than
    any ID token of ours is refused at the push, as at /authorize."""
    params = request_params(rp, id_token_hint="x" * 8193)
    body = refused(app, push(client, rp, params), "invalid_request")
    assert body["error_description"] == "'id_token_hint' is too long."


def test_self_registered_clients_are_limited_per_address(app, client, monkeypatch):
    """Anyone can register a confidential client (RFC 7591): its pushes are counted per
    address like a public client's, and it gets the smaller cap of open requests."""
    storage = app.extensions["push_throttle"]._limiter.storage
    monkeypatch.setitem(app.extensions, "push_throttle", PushThrottle(storage, "2/hour"))
    registered = make_client(app, "self-made", scope="openid profile email", self_registered=True)
    pushed_uri(push(client, registered))
    pushed_uri(push(client, registered))
    response = push(client, registered)
    token_error(response, "invalid_request", 429)
    assert pushed_count(app) == 2
    monkeypatch.setitem(app.extensions, "push_throttle", PushThrottle(storage, "100/hour"))
    monkeypatch.setattr(par, "MAX_OPEN_PER_PUBLIC_CLIENT", 2)
    token_error(push(client, registered), "invalid_request", 429)  # the cap now
    assert pushed_count(app) == 2


def test_denying_sends_back_the_pushed_state(app, client, signed_in, rp):
    """RFC 6749 §4.1.2.1: the error carries the request's state, the pushed one; a state
    added to the consent form is not the request's."""
    params = request_params(rp, state="pushed-state")
    request_uri = pushed_uri(push(client, rp, params))
    location = authorize_by_reference(signed_in, rp.client_id, request_uri).headers["Location"]
    page = signed_in.client.get(location).get_data(as_text=True)
    fields = MultiDict(hidden_fields(page) + [("decision", "deny"), ("state", "from-form")])
    query = query_of(signed_in.client.post("/consent", data=fields).headers["Location"])
    assert (query["error"], query["state"]) == ("access_denied", "pushed-state")


def test_an_error_sent_back_answers_the_request(app, client, signed_in, rp):
    """§4 one-time use: an error redirected to the client (here consent_required for
    prompt=none) is the request's answer, as a code is."""
    request_uri = pushed_uri(push(client, rp, request_params(rp, prompt="none")))
    response = authorize_by_reference(signed_in, rp.client_id, request_uri)
    assert query_of(response.headers["Location"])["error"] == "consent_required"
    refused_at_authorize(app, lambda: authorize_by_reference(signed_in, rp.client_id, request_uri))


def test_the_loser_of_a_race_records_no_consent(app, client, signed_in, rp, runtime, monkeypatch):
    """The reference is claimed before the consent is written: of two approvals that both
    read the open request, the one whose claim fails (par.answer, one conditional UPDATE)
    writes no consent and no consent event."""
    request_uri = pushed_uri(push(client, rp))
    location = authorize_by_reference(signed_in, rp.client_id, request_uri).headers["Location"]
    page = signed_in.client.get(location).get_data(as_text=True)
    fields = MultiDict(hidden_fields(page) + [("decision", "approve")])
    monkeypatch.setattr(par, "answer", lambda session, uri: False)  # the other one won
    error_page(signed_in.client.post("/consent", data=fields))
    assert [row for row in audit_events(app, "consent") if row.outcome == "success"] == []
    assert count(app, Consent) == 0


def test_a_pushed_prompt_login_cannot_be_skipped_at_the_consent_page(app, client, signed_in, rp):
    """OIDC Core §3.1.2.1 holds for pushed requests too: the consent page opened directly
    with the reference of a pushed prompt=login goes through /authorize, which asks for the
    sign-in; after it, the flow completes."""
    request_uri = pushed_uri(push(client, rp, request_params(rp, prompt="login")))
    reference = {"client_id": rp.client_id, "request_uri": request_uri}
    direct = signed_in.client.get("/consent?" + urlencode(reference))
    assert urlsplit(direct.headers["Location"]).path == "/authorize"
    to_login = signed_in.client.get(direct.headers["Location"])
    assert urlsplit(to_login.headers["Location"]).path == "/login"
    next_url = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]
    back = signed_in.login("alice", DEFAULT_PASSWORD, next_url)
    final = approve(signed_in, signed_in.client.get(back.headers["Location"]))
    assert "code" in query_of(final.headers["Location"])


# §6: a client registered to push every request.


@pytest.fixture
def par_only(app):
    return make_client(app, "par-only", scope="openid profile", require_par=True)


def test_a_client_that_must_push_is_refused_at_authorize(app, client, signed_in, par_only, issuer):
    """§6: "the authorization server MUST only accept authorization request parameters via
    PAR" for such a client: a request sent through the browser is invalid_request, sent back
    to its registered redirect URI (the client and redirect URI are known good), no code."""
    before = issued_counts(app)
    response = signed_in.client.get("/authorize?" + urlencode(request_params(par_only)))
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(par_only.redirect_uri)
    assert (query["error"], query["iss"]) == ("invalid_request", issuer)
    assert "/par" in query["error_description"]
    assert issued_counts(app) == before


def test_a_client_that_must_push_signs_in_through_par(app, client, signed_in, par_only):
    request_uri = pushed_uri(push(client, par_only))
    response = authorize_by_reference(signed_in, par_only.client_id, request_uri)
    assert "code" in query_of(approve(signed_in, response).headers["Location"])


def test_the_server_can_require_par_of_every_client(migrated_database):
    """§5: with AUTHSERVER_REQUIRE_PAR discovery says require_pushed_authorization_requests
    and /authorize refuses any request not pushed, whatever the client's registration."""
    server_app = build_test_app(migrated_database, require_par=True)
    try:
        reset_database(server_app)
        http = server_app.test_client()
        metadata = http.get("/.well-known/openid-configuration").get_json()
        assert metadata["require_pushed_authorization_requests"] is True
        rp = make_client(server_app, "web-rp", scope="openid profile")
        make_user(server_app, "alice")
        person = Browser(server_app.test_client())
        person.login("alice", DEFAULT_PASSWORD)
        before = issued_counts(server_app)
        sent = person.client.get("/authorize?" + urlencode(request_params(rp)))
        assert query_of(sent.headers["Location"])["error"] == "invalid_request"
        assert issued_counts(server_app) == before
        request_uri = pushed_uri(push(http, rp))
        response = authorize_by_reference(person, rp.client_id, request_uri)
        assert "code" in query_of(approve(person, response).headers["Location"])
    finally:
        reset_database(server_app)
        server_app.extensions["authserver"].engine.dispose()
