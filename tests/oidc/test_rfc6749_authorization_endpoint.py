"""Authorization endpoint, RFC 6749 §3.1 and §4.1.1-4.1.2.1 (with OIDC Core §3.1.2 and §6).

Errors about the client or its redirect URI are a page and never a redirect;
every other error goes back to the client with `state` and `iss`. Nothing is
issued by a refused request.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from werkzeug.datastructures import MultiDict

from authserver.models import Consent, Grant
from tests.support.db import count, issued_counts, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_resource,
    make_user,
)
from tests.support.flows import Pkce, code_params, csrf_token, hidden_fields, query_of
from tests.support.oauth import error_page, last_refusal, redirect_error, tokens_for

OTHER_REDIRECT = "https://other.example.com/callback"


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", scope="openid profile read")


@pytest.fixture
def signed_in(app, browser):
    make_user(app, "alice")
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def get_authorize(browser, params):
    """One GET /authorize, without following anything (a list value repeats the parameter)."""
    return browser.client.get("/authorize?" + urlencode(params, doseq=True))


def valid_params(rp, **extra):
    """A valid request from `rp` (with PKCE), with `extra` replacing or adding parameters."""
    return {**code_params(rp.client_id, rp.redirect_uri, Pkce.new()), **extra}


# §4.1.2.1: a bad client or redirect URI is shown to the person, never redirected.


def test_missing_client_id_is_a_page_not_a_redirect(app, signed_in, rp):
    """§4.1.2.1: client_id missing: MUST NOT automatically redirect."""
    params = valid_params(rp)
    del params["client_id"]
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert "Missing 'client_id' parameter." in page
    assert last_refusal(app, "authorize") == "invalid_client"
    assert issued_counts(app) == before


def test_unknown_client_id_is_a_page_not_a_redirect(app, signed_in, rp):
    """§4.1.2.1: client_id invalid: MUST NOT automatically redirect."""
    params = valid_params(rp, client_id="no-such-client")
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert "The client does not exist on this server." in page
    assert last_refusal(app, "authorize") == "invalid_client"
    assert issued_counts(app) == before


def test_unknown_client_with_unsupported_response_type_is_a_page(app, signed_in, rp):
    """§4.1.2.1: an unverifiable redirect URI is never used, whatever else is wrong."""
    params = valid_params(rp, client_id="no-such-client", response_type="token")
    before = issued_counts(app)
    error_page(get_authorize(signed_in, params))
    assert last_refusal(app, "authorize") == "unsupported_response_type"
    assert issued_counts(app) == before


def test_missing_redirect_uri_is_a_page_not_a_redirect(app, signed_in, rp):
    """§4.1.2.1 and OIDC Core §3.1.2.1: redirect_uri is required; missing, no redirect."""
    params = valid_params(rp)
    del params["redirect_uri"]
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert "Missing 'redirect_uri' in request." in page
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


def test_unregistered_redirect_uri_is_a_page_not_a_redirect(app, signed_in, rp):
    """§4.1.2.1: an unregistered redirection URI: MUST NOT automatically redirect to it."""
    params = valid_params(rp, redirect_uri="https://attacker.example.net/callback")
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert "The 'redirect_uri' is not registered for this client." in page
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://rp.example.com/callback/",
        "https://rp.example.com/callback?next=/admin",
        "https://rp.example.com/Callback",
        "https://RP.example.com/callback",
        "https://rp.example.com:8443/callback",
        "http://rp.example.com/callback",
        "https://rp.example.com/callback#fragment",
        "https://rp.example.com/callback/../callback",
        'https://rp.example.com/callback"x',
        "https://rp.example.com/callback\\x",
        OTHER_REDIRECT,
    ],
)
def test_mismatched_redirect_uri_is_a_page_not_a_redirect(app, signed_in, rp, redirect_uri):
    """§3.1.2.3 / RFC 9700 §4.1.3: exact string match; any difference is a page, not a redirect."""
    make_client(app, "other-rp", redirect_uris=[OTHER_REDIRECT])
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, valid_params(rp, redirect_uri=redirect_uri)))
    assert "The 'redirect_uri' is not registered for this client." in page
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


def test_confidential_client_gets_no_loopback_port_leeway(app, signed_in):
    """RFC 8252 §7.3 allows any loopback port for native (public) clients only."""
    rp = make_client(app, "loopback-web", redirect_uris=["http://127.0.0.1/callback"])
    params = valid_params(rp, redirect_uri="http://127.0.0.1:5555/callback")
    before = issued_counts(app)
    error_page(get_authorize(signed_in, params))
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.1:65536/callback",
        "http://127.0.0.1:\u0968\u0966/callback",
        "http://[::1/callback",
    ],
    ids=["port-too-large", "port-65536", "non-ascii-digits", "unclosed-ipv6"],
)
def test_malformed_loopback_redirect_is_a_page_not_a_500(app, signed_in, redirect_uri):
    """§4.1.2.1 / RFC 8252 §7.3: a loopback redirect URI that is not a valid URL (a port out
    of range, an unclosed IPv6 literal) is an invalid redirect URI: a page, never a 500."""
    native = make_public_client(app)
    params = valid_params(native, redirect_uri=redirect_uri)
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert "The 'redirect_uri' is not registered for this client." in page
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
def test_repeated_client_id_or_redirect_uri_is_a_page(app, signed_in, rp, name):
    """§3.1: parameters MUST NOT repeat; for these two the redirect cannot be trusted."""
    params = valid_params(rp)
    params[name] = [params[name], params[name]]
    before = issued_counts(app)
    page = error_page(get_authorize(signed_in, params))
    assert f"Multiple '{name}'" in page
    assert last_refusal(app, "authorize") == "invalid_request"
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "name", ["response_type", "scope", "state", "nonce", "code_challenge", "prompt", "max_age"]
)
def test_repeated_parameter_is_invalid_request(app, signed_in, rp, issuer, name):
    """§3.1 / §4.1.2.1: a parameter included more than once is invalid_request, redirected."""
    params = valid_params(rp, prompt="consent", max_age="60")
    params[name] = [params[name], params[name]]
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "invalid_request", issuer)
    assert query["error_description"] == f"Multiple '{name}' in request."
    assert issued_counts(app) == before


# §4.1.2.1: other errors go back to the client with state and iss.


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", 'co"de'])
def test_unsupported_response_type(app, signed_in, rp, issuer, response_type):
    """§4.1.2.1: unsupported_response_type, redirected with the exact state and iss."""
    params = valid_params(rp, response_type=response_type)
    before = issued_counts(app)
    query = redirect_error(
        get_authorize(signed_in, params), rp, "unsupported_response_type", issuer
    )
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_missing_response_type_is_invalid_request(app, signed_in, rp, issuer):
    """§4.1.1 response_type is REQUIRED; §4.1.2.1: missing parameter is invalid_request."""
    params = valid_params(rp)
    del params["response_type"]
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "invalid_request", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_response_type_not_registered_for_client(app, signed_in, issuer):
    """§4.1.2.1 unauthorized_client: the client may not use the code flow."""
    rp = make_client(
        app, "m2m", grant_types=["client_credentials"], redirect_uris=["https://m2m.example/cb"]
    )
    params = valid_params(rp)
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "unauthorized_client", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_unknown_scope_is_invalid_scope(app, signed_in, rp, issuer):
    """§4.1.2.1 invalid_scope: the requested scope is unknown (never silently dropped)."""
    params = valid_params(rp, scope="openid launch_missiles")
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "invalid_scope", issuer)
    assert query["state"] == params["state"]
    assert query["error_description"] == "The request asks for an unknown scope."
    assert issued_counts(app) == before


def test_repeated_scope_values_count_once(app, client, signed_in, rp):
    """§3.3: a scope is a set of values. Repeated ones are one value: the code, its grant and
    its tokens say each scope once, however many times the request repeats it (300 times
    here: kept as sent, that no longer fits the stored scope)."""
    tokens = tokens_for(signed_in, client, rp, scope="openid " * 300 + "profile openid")
    assert tokens["scope"] == "openid profile"
    [grant] = rows(app, Grant)
    assert grant.scope == "openid profile"


def test_scope_not_allowed_to_client_is_invalid_scope(app, signed_in, rp, issuer):
    """§4.1.2.1 invalid_scope: a known scope the client is not registered for."""
    make_resource(app, "https://api.example.com", scopes=("read", "write"))
    params = valid_params(rp, scope="openid write")
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "invalid_scope", issuer)
    assert query["error_description"] == "The client may not request this scope."
    assert issued_counts(app) == before


def test_user_denies_consent(app, signed_in, rp, issuer):
    """§4.1.2.1 access_denied: the resource owner denied the request; state comes back."""
    params = valid_params(rp)
    before = issued_counts(app)
    response = signed_in.authorize(params, decision="deny")
    query = redirect_error(response, rp, "access_denied", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before
    assert count(app, Consent) == 0


@pytest.mark.parametrize(
    "state",
    ["a b+c/d=e&f%g?h#i", "~!@$^*()[]{}|;:'<>,\\\"`", "  leading and trailing  ", "x" * 2000],
)
def test_state_is_echoed_exactly(app, signed_in, rp, state):
    """§4.1.2: state is "the exact value received from the client" (any VSCHAR, Appendix A.5)."""
    params = valid_params(rp, state=state)
    response = signed_in.authorize(params)
    query = query_of(response.headers["Location"])
    assert query["code"]
    assert query["state"] == state


def test_overlong_state_is_refused(app, signed_in, rp, issuer):
    """§4.1.2.1 invalid_request: a malformed (oversized) state is refused, not truncated."""
    params = valid_params(rp, state="x" * 2001)
    before = issued_counts(app)
    redirect_error(get_authorize(signed_in, params), rp, "invalid_request", issuer)
    assert issued_counts(app) == before


def test_no_state_no_state_in_response(app, signed_in, rp):
    """§4.1.2: state is REQUIRED in the response only if it was in the request."""
    params = valid_params(rp)
    del params["state"]
    query = query_of(signed_in.authorize(params).headers["Location"])
    assert query["code"] and "state" not in query


@pytest.mark.parametrize(
    ("name", "error"),
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
)
def test_request_objects_are_not_supported(app, signed_in, rp, issuer, name, error):
    """OIDC Core §6.1/§6.2 and §3.1.2.6: request objects unsupported, with the registered code."""
    params = valid_params(rp, **{name: "eyJhbGciOiJub25lIn0.e30."})
    if name == "request_uri":
        params[name] = "https://rp.example.com/request.jwt"
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, error, issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


@pytest.mark.parametrize("mode", ["fragment", "form_post", "query.jwt", "web_message"])
def test_response_mode_other_than_query_is_refused(app, signed_in, rp, issuer, mode):
    """OAuth 2.0 Multiple Response Types §2.1: only response_mode=query is supported here."""
    params = valid_params(rp, response_mode=mode)
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "invalid_request", issuer)
    assert query["error_description"] == "Only response_mode=query is supported."
    assert issued_counts(app) == before


def test_explicit_response_mode_query_works(app, signed_in, rp):
    """Multiple Response Types §2.1: query is the code flow's default and is accepted."""
    query = query_of(
        signed_in.authorize(valid_params(rp, response_mode="query")).headers["Location"]
    )
    assert query["code"]


def test_post_to_authorize_is_accepted(app, signed_in, rp):
    """OIDC Core §3.1.2.1: the authorization endpoint MUST support GET and POST."""
    signed_in.authorize(valid_params(rp))  # consent remembered
    response = signed_in.client.post("/authorize", data=valid_params(rp))
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["code"]


# Consent (OIDC Core §3.1.2.4): remembered, and protected against cross-site posts.


def test_approved_consent_is_remembered(app, signed_in, rp):
    """§3.1.2.4: once approved, the same request is answered without asking again."""
    first = signed_in.client.get("/authorize?" + urlencode(valid_params(rp)))
    assert first.headers["Location"].startswith("/consent")
    assert query_of(signed_in.authorize(valid_params(rp)).headers["Location"])["code"]
    second = signed_in.client.get("/authorize?" + urlencode(valid_params(rp)))
    assert second.status_code == 302
    assert second.headers["Location"].startswith(rp.redirect_uri)
    assert query_of(second.headers["Location"])["code"]


def test_public_client_asks_every_time(app, signed_in, issuer):
    """RFC 8252 §8.6: a public client's identity cannot be assured (another app on the
    device can use its client_id with its own PKCE pair and loopback port), so an earlier
    approval does not answer its next request silently: the consent page again, and with
    prompt=none consent_required, no code."""
    native = make_public_client(app)
    params = valid_params(native)
    assert query_of(signed_in.authorize(params).headers["Location"])["code"]
    assert count(app, Consent) == 1
    again = get_authorize(signed_in, valid_params(native))
    assert again.headers["Location"].startswith("/consent")
    before = issued_counts(app)
    silent = get_authorize(signed_in, valid_params(native, prompt="none"))
    redirect_error(silent, native, "consent_required", issuer)
    assert issued_counts(app) == before


def test_remembered_consent_does_not_cover_new_scopes(app, signed_in, rp):
    """§3.1.2.4: consent covers the scopes approved, not a wider request."""
    signed_in.authorize(valid_params(rp, scope="openid"))
    response = signed_in.client.get("/authorize?" + urlencode(valid_params(rp)))
    assert response.headers["Location"].startswith("/consent")


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_consent_post_without_valid_csrf_token_is_refused(app, signed_in, rp, token):
    """A consent decision needs the page's CSRF token; otherwise a 400 page and no code."""
    params = valid_params(rp)
    page = signed_in.client.get("/consent?" + urlencode(params)).get_data(as_text=True)
    csrf_token(page)  # the real page carries one
    fields = [(k, v) for k, v in hidden_fields(page) if k != "csrf_token"]
    if token:
        fields.append(("csrf_token", token))
    before = issued_counts(app)
    response = signed_in.client.post("/consent", data=MultiDict([*fields, ("decision", "approve")]))
    assert "The form expired" in error_page(response)
    assert issued_counts(app) == before
    assert count(app, Consent) == 0


def test_consent_post_without_decision_is_refused(app, signed_in, rp):
    """The consent form must say approve or deny; anything else issues nothing."""
    page = signed_in.client.get("/consent?" + urlencode(valid_params(rp))).get_data(as_text=True)
    before = issued_counts(app)
    response = signed_in.client.post(
        "/consent", data=MultiDict([*hidden_fields(page), ("decision", "yes")])
    )
    assert "Choose approve or deny" in error_page(response)
    assert issued_counts(app) == before


def test_checks_run_in_a_fixed_order(app, signed_in, issuer):
    """The authorization request checks are an ordered list: with several problems the same
    (first) one is reported in every process, not whichever a hash order picks."""
    native = make_public_client(app)
    native = type(native)(native.client_id, None, "http://127.0.0.1:5555/callback")
    params = {**code_params(native.client_id, native.redirect_uri), "request": "e30"}
    before = issued_counts(app)
    redirect_error(get_authorize(signed_in, params), native, "request_not_supported", issuer)
    assert issued_counts(app) == before
