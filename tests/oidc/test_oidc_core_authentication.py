"""OpenID Connect Core 1.0 §3.1.2.1-§3.1.3.7: authentication with the code flow.

ID tokens are checked the way a relying party checks them: signature against
the keys published at /jwks.json with the client's registered algorithm, then
iss, aud, exp, iat, auth_time, nonce and at_hash. `prompt` and `max_age` are
honoured without sign-in loops.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from werkzeug.datastructures import MultiDict

from authserver.models import now
from authserver.web import account, authorize
from tests.support.db import audit_events, issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Browser, Pkce, code_params, csrf_token, hidden_fields, query_of
from tests.support.oauth import redeem, redirect_error, token_error, verify_with_jwks

HALF_HASH = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "EdDSA": hashlib.sha512}


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp")


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def signed_in(browser, alice):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def params_for(rp, **extra):
    return {**code_params(rp.client_id, rp.redirect_uri, Pkce.new()), **extra}


def get_authorize(browser, params):
    return browser.client.get("/authorize?" + urlencode(params))


def login_next(response):
    """The `next` of a redirect to the sign-in page."""
    assert response.status_code == 302, response.get_data(as_text=True)[-300:]
    location = response.headers["Location"]
    assert urlsplit(location).path == "/login", location
    return parse_qs(urlsplit(location).query)["next"][0]


def sign_in_again(browser, response):
    """Sign in from the login redirect; returns the authorization request to resume."""
    next_url = login_next(response)
    assert urlsplit(next_url).path == "/authorize"
    back = browser.login("alice", DEFAULT_PASSWORD, next_url=next_url)
    assert back.status_code == 302 and back.headers["Location"] == next_url
    return {key: values[0] for key, values in parse_qs(urlsplit(next_url).query).items()}


def at_hash(access_token, alg):
    digest = HALF_HASH[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


@pytest.fixture
def old_sign_in(browser, alice, monkeypatch):
    """Alice signed in ten minutes ago."""
    moment = now() - 600
    with monkeypatch.context() as patch:
        patch.setattr(account, "now", lambda: moment)
        browser.login("alice", DEFAULT_PASSWORD)
    return moment


# §3.1.3.6-3.1.3.7: the ID token.


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_id_token_claims_and_signature(app, client, signed_in, alice, issuer, alg):
    """§2, §3.1.3.6, §3.1.3.7: signed with the client's id_token_signed_response_alg (RS256 by
    default), verifiable with /jwks.json, carrying iss, sub, aud, exp, iat, auth_time, nonce and
    at_hash."""
    options = {} if alg == "RS256" else {"id_token_alg": alg}
    rp = make_client(app, f"rp-{alg.lower()}", **options)
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce)
    started = now()
    code = signed_in.code_for(params)
    body = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()
    claims = verify_with_jwks(
        client, body["id_token"], audience=rp.client_id, issuer=issuer, alg=alg
    )
    assert jwt.get_unverified_header(body["id_token"])["kid"]
    assert claims["iss"] == issuer
    assert claims["sub"] == alice.id
    assert claims["aud"] == rp.client_id
    assert started - 1 <= claims["iat"] <= now() + 1
    assert claims["exp"] > claims["iat"]
    assert claims["auth_time"] <= claims["iat"]
    assert claims["nonce"] == params["nonce"]
    assert claims["at_hash"] == at_hash(body["access_token"], alg)


def test_no_id_token_without_openid(app, client, signed_in, rp):
    """§3.1.2.1: without the openid scope the request is plain OAuth 2.0: no ID token."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri, pkce, scope="profile"))
    body = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()
    assert "id_token" not in body
    assert body["access_token"]
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=rp.basic_auth,
    ).get_json()
    assert refreshed["access_token"] and "id_token" not in refreshed


def test_nonce_absent_means_no_nonce_claim(app, client, signed_in, rp):
    """§3.1.2.1 nonce is OPTIONAL in the code flow; §2: present only if it was sent."""
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce)
    del params["nonce"]
    code = signed_in.code_for(params)
    id_token = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()["id_token"]
    assert "nonce" not in jwt.decode(id_token, options={"verify_signature": False})


# §3.1.2.1 request validation.


@pytest.mark.parametrize(
    "prompt", ["none login", "none consent", "login none", "none select_account"]
)
def test_prompt_none_with_other_values_is_invalid(app, signed_in, rp, issuer, prompt):
    """§3.1.2.1: "If this parameter contains none with any other value, an error is returned"."""
    before = issued_counts(app)
    query = redirect_error(
        get_authorize(signed_in, params_for(rp, prompt=prompt)), rp, "invalid_request", issuer
    )
    assert query["error_description"] == "'prompt=none' cannot be combined with other values."
    assert issued_counts(app) == before


@pytest.mark.parametrize("prompt", ["always", "LOGIN", "login  bogus"])
def test_unknown_prompt_value_is_invalid(app, signed_in, rp, issuer, prompt):
    """§3.1.2.1: prompt is a space-delimited list of the defined values (case-sensitive)."""
    before = issued_counts(app)
    query = redirect_error(
        get_authorize(signed_in, params_for(rp, prompt=prompt)), rp, "invalid_request", issuer
    )
    assert query["error_description"] == "Unknown 'prompt' value."
    assert issued_counts(app) == before


@pytest.mark.parametrize("max_age", ["abc", "-1", "1.5", "", " 60", "9" * 10])
def test_max_age_must_be_a_non_negative_integer(app, signed_in, rp, issuer, max_age):
    """§3.1.2.1: max_age is a number of seconds (a non-negative integer)."""
    before = issued_counts(app)
    query = redirect_error(
        get_authorize(signed_in, params_for(rp, max_age=max_age)), rp, "invalid_request", issuer
    )
    assert query["error_description"] == "'max_age' must be a non-negative integer."
    assert issued_counts(app) == before


def test_overlong_nonce_is_invalid(app, signed_in, rp, issuer):
    """§3.1.2.1 / §15.5.2: the nonce is bounded; an oversized one is refused, not truncated."""
    before = issued_counts(app)
    query = redirect_error(
        get_authorize(signed_in, params_for(rp, nonce="n" * 501)), rp, "invalid_request", issuer
    )
    assert query["error_description"] == "'nonce' is too long."
    assert issued_counts(app) == before
    assert query_of(signed_in.authorize(params_for(rp, nonce="n" * 500)).headers["Location"])[
        "code"
    ]


# §3.1.2.1 prompt=none, §3.1.2.6 its errors.


def test_prompt_none_when_not_signed_in(app, browser, alice, rp, issuer):
    """§3.1.2.6 login_required: prompt=none and no signed-in End-User; no page is shown."""
    params = params_for(rp, prompt="none")
    before = issued_counts(app)
    query = redirect_error(get_authorize(browser, params), rp, "login_required", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_prompt_none_without_consent(app, signed_in, rp, issuer):
    """§3.1.2.6 consent_required: prompt=none but the End-User has not consented."""
    params = params_for(rp, prompt="none")
    before = issued_counts(app)
    query = redirect_error(get_authorize(signed_in, params), rp, "consent_required", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_prompt_none_with_session_and_consent(app, signed_in, rp):
    """§3.1.2.1 prompt=none: answered silently when signed in and consented."""
    signed_in.authorize(params_for(rp))
    response = get_authorize(signed_in, params_for(rp, prompt="none"))
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["code"]


def _id_token(runtime, subject: str, client_id: str) -> str:
    return runtime.minter.id_token(
        client_id=client_id, alg="RS256", subject=subject, auth_time=now(), nonce=None,
        access_token=None,
    )  # fmt: skip


@pytest.mark.parametrize("hint", ["other_user", "other_client", "not_a_token"])
def test_prompt_none_with_a_hint_for_someone_else(app, runtime, signed_in, alice, rp, issuer, hint):
    """§3.1.2.2 id_token_hint: with prompt=none, a hint naming another End-User (or not an ID
    token of ours for this client) is login_required, never a silent code for whoever is
    signed in. The same request with alice's own hint answers with a code (the control)."""
    signed_in.authorize(params_for(rp))
    bob = make_user(app, "bob")
    hints = {
        "other_user": _id_token(runtime, bob.id, rp.client_id),
        "other_client": _id_token(runtime, alice.id, "another-client"),
        "not_a_token": "not-a-token",
    }
    before = issued_counts(app)
    response = get_authorize(signed_in, params_for(rp, prompt="none", id_token_hint=hints[hint]))
    redirect_error(response, rp, "login_required", issuer)
    assert issued_counts(app) == before
    own = _id_token(runtime, alice.id, rp.client_id)
    response = get_authorize(signed_in, params_for(rp, prompt="none", id_token_hint=own))
    assert query_of(response.headers["Location"])["code"]


def test_prompt_none_with_max_age_exceeded(app, browser, old_sign_in, rp, issuer):
    """§3.1.2.6 login_required: prompt=none cannot re-authenticate for max_age."""
    browser.authorize(params_for(rp))
    before = issued_counts(app)
    response = get_authorize(browser, params_for(rp, prompt="none", max_age="60"))
    redirect_error(response, rp, "login_required", issuer)
    assert issued_counts(app) == before


# §3.1.2.1 prompt=login and max_age: re-authentication, without loops.


def test_prompt_login_forces_reauthentication_then_completes(app, client, browser, old_sign_in, rp):
    """§3.1.2.1 prompt=login: the End-User signs in again; the flow then completes (no loop)
    and the ID token's auth_time is the new sign-in."""
    browser.authorize(params_for(rp))
    logins = len(audit_events(app, "login"))
    pkce = Pkce.new()
    params = {**code_params(rp.client_id, rp.redirect_uri, pkce), "prompt": "login"}
    resumed = sign_in_again(browser, get_authorize(browser, params))
    assert resumed["prompt"] == "login"
    signed_in_at = now()
    response = browser.authorize(resumed)
    code = query_of(response.headers["Location"])["code"]
    assert len(audit_events(app, "login")) == logins + 1
    id_token = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()["id_token"]
    auth_time = jwt.decode(id_token, options={"verify_signature": False})["auth_time"]
    assert auth_time >= signed_in_at - 1 > old_sign_in


def test_prompt_select_account_lets_the_person_choose_another_account(app, client, browser, rp):
    """§3.1.2.1 prompt=select_account: the OP prompts for the account to use, never a silent
    code for whoever is signed in. The sign-in page is that prompt: signed in as alice, the
    person continues as bob, and the code is bob's."""
    make_user(app, "alice")
    bob = make_user(app, "bob")
    browser.login("alice", DEFAULT_PASSWORD)
    browser.authorize(params_for(rp))  # alice's consent is remembered
    pkce = Pkce.new()
    params = {**code_params(rp.client_id, rp.redirect_uri, pkce), "prompt": "select_account"}
    before = issued_counts(app)
    next_url = login_next(get_authorize(browser, params))
    assert issued_counts(app) == before
    back = browser.login("bob", DEFAULT_PASSWORD, next_url=next_url)
    assert back.headers["Location"] == next_url
    code = query_of(browser.authorize(params).headers["Location"])["code"]
    id_token = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()["id_token"]
    assert jwt.decode(id_token, options={"verify_signature": False})["sub"] == bob.id


@pytest.mark.parametrize(
    "asks",
    [{"prompt": "login"}, {"prompt": "select_account"}, {"max_age": "0"}, {"max_age": "60"}],
)
def test_reauthentication_cannot_be_skipped(app, browser, old_sign_in, rp, asks):
    """§3.1.2.1: the OP MUST re-authenticate for prompt=login or an exceeded max_age. Opening
    the sign-in page's `next` without signing in asks again; a sign-in counts once, for the
    request it was made for: the same request opened again later asks again."""
    browser.authorize(params_for(rp))
    params = params_for(rp, **asks)
    before = issued_counts(app)
    next_url = login_next(get_authorize(browser, params))
    skipped = browser.client.get(next_url)
    assert urlsplit(skipped.headers["Location"]).path == "/login"
    assert issued_counts(app) == before

    resumed = sign_in_again(browser, skipped)
    assert query_of(browser.authorize(resumed).headers["Location"])["code"]
    if "prompt" in asks:  # (a sign-in this second satisfies max_age, even max_age=0)
        again = get_authorize(browser, resumed)
        assert urlsplit(again.headers["Location"]).path == "/login"


def test_prompt_login_keeps_prompt_consent(app, browser, old_sign_in, rp):
    """§3.1.2.1: prompt=login consent asks for both; signing in must not drop the consent step."""
    browser.authorize(params_for(rp))
    resumed = sign_in_again(browser, get_authorize(browser, params_for(rp, prompt="login consent")))
    response = get_authorize(browser, resumed)
    assert response.headers["Location"].startswith("/consent")


def test_prompt_consent_when_not_signed_in_survives_sign_in(app, signed_in, rp):
    """§3.1.2.1 prompt=consent: still asked after the sign-in that the request led to."""
    signed_in.authorize(params_for(rp))
    fresh = Browser(app.test_client())
    resumed = sign_in_again(fresh, get_authorize(fresh, params_for(rp, prompt="consent")))
    response = get_authorize(fresh, resumed)
    assert response.headers["Location"].startswith("/consent")


def test_prompt_consent_shows_consent_again(app, signed_in, rp):
    """§3.1.2.1 prompt=consent: consent is asked even though it was given before."""
    signed_in.authorize(params_for(rp))
    assert get_authorize(signed_in, params_for(rp)).headers["Location"].startswith(rp.redirect_uri)
    response = get_authorize(signed_in, params_for(rp, prompt="consent"))
    assert response.headers["Location"].startswith("/consent")
    final = signed_in.authorize(params_for(rp, prompt="consent"))
    assert query_of(final.headers["Location"])["code"]


def test_max_age_zero_forces_login_without_loop(app, browser, old_sign_in, rp, monkeypatch):
    """§3.1.2.1 max_age=0 is like prompt=login: sign in again, then the flow completes, even
    when a second passes between the sign-in and the return to /authorize."""
    browser.authorize(params_for(rp))
    resumed = sign_in_again(browser, get_authorize(browser, params_for(rp, max_age="0")))
    later = now() + 1
    monkeypatch.setattr(authorize, "now", lambda: later)
    response = browser.authorize(resumed)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["code"]


def test_max_age_exceeded_forces_login(app, browser, old_sign_in, rp):
    """§3.1.2.1 max_age: older than max_age seconds, the OP MUST actively re-authenticate."""
    browser.authorize(params_for(rp))
    resumed = sign_in_again(browser, get_authorize(browser, params_for(rp, max_age="300")))
    assert query_of(browser.authorize(resumed).headers["Location"])["code"]


def test_max_age_not_exceeded_needs_no_login(app, client, browser, old_sign_in, rp):
    """§3.1.2.1 max_age: a recent enough sign-in is reused; auth_time is in the ID token."""
    pkce = Pkce.new()
    params = {**code_params(rp.client_id, rp.redirect_uri, pkce), "max_age": "3600"}
    code = query_of(browser.authorize(params).headers["Location"])["code"]
    id_token = redeem(client, rp, code, code_verifier=pkce.verifier).get_json()["id_token"]
    assert jwt.decode(id_token, options={"verify_signature": False})["auth_time"] == old_sign_in


@pytest.mark.parametrize(
    "asks", [{"prompt": "login"}, {"max_age": "0"}, {"prompt": "none"}, {"prompt": "login consent"}]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_consent_page_cannot_skip_authorize(
    app, browser, old_sign_in, rp, issuer, asks, method
):
    """§3.1.2.1: prompt and max_age are enforced at /authorize, and the consent page asks for
    no sign-in of its own. Opened directly with such a request (a crafted link, or its form
    posted), it sends the browser through /authorize, which asks for the sign-in (or answers
    prompt=none): no consent page, no code."""
    params = params_for(rp, **asks)
    before = issued_counts(app)
    if method == "GET":
        response = browser.client.get("/consent?" + urlencode(params))
    else:
        token = csrf_token(browser.client.get("/login").get_data(as_text=True))
        form = {**params, "csrf_token": token, "decision": "approve"}
        response = browser.client.post("/consent", data=form)
    location = response.headers["Location"]
    assert response.status_code == 302 and urlsplit(location).path == "/authorize", location
    assert query_of(location) == params
    assert issued_counts(app) == before
    followed = get_authorize(browser, params)
    if asks.get("prompt") == "none":
        redirect_error(followed, rp, "consent_required", issuer)
    else:
        assert urlsplit(followed.headers["Location"]).path == "/login"
    assert issued_counts(app) == before


def test_a_consent_form_counts_once(app, browser, old_sign_in, rp):
    """The pass through /authorize that led to the consent page allows one decision: the
    same form posted again (max_age=0, so the sign-in it rests on is already too old) goes
    back through /authorize instead of issuing a second code."""
    browser.authorize(params_for(rp))
    asks = params_for(rp, max_age="0", prompt="consent")
    resumed = sign_in_again(browser, get_authorize(browser, asks))
    to_consent = get_authorize(browser, resumed)
    page = browser.client.get(to_consent.headers["Location"]).get_data(as_text=True)
    form = MultiDict(hidden_fields(page) + [("decision", "approve")])
    assert "code" in query_of(browser.client.post("/consent", data=form).headers["Location"])
    codes = issued_counts(app)["authorization_codes"]
    again = browser.client.post("/consent", data=form)
    assert urlsplit(again.headers["Location"]).path == "/authorize"
    assert issued_counts(app)["authorization_codes"] == codes


def test_signed_out_user_is_sent_to_sign_in(app, browser, alice, rp):
    """§3.1.2.3: the End-User is authenticated before anything is issued."""
    before = issued_counts(app)
    resumed = sign_in_again(browser, get_authorize(browser, params_for(rp)))
    assert issued_counts(app) == before
    assert query_of(browser.authorize(resumed).headers["Location"])["code"]


def test_id_token_is_not_reissued_for_a_spent_code(app, client, signed_in, rp):
    """§3.1.3.2 with RFC 6749 §4.1.2: the code is single-use, so is its ID token."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri, pkce))
    assert redeem(client, rp, code, code_verifier=pkce.verifier).status_code == 200
    token_error(redeem(client, rp, code, code_verifier=pkce.verifier), "invalid_grant")
