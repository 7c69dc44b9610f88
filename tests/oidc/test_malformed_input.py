"""Malformed input at every endpoint changes nothing and never breaks the server.

RFC 6749 §3.1 and §3.2 (parameters sent once, form-encoded bodies), §4.1.2.1 (which
errors may redirect), §5.2 (JSON error shape); RFC 6750 §3.1 (bearer errors);
RFC 7009 §2.2 and RFC 7662 §2.2 (an unknown token is not an error); OIDC Core
§3.1.2.6. Every case checks: no 5xx, no trace or internal name in the body, JSON
errors for APIs and pages for people, and no token, code, grant or consent written.

Inputs the server deliberately accepts are listed in ACCEPTED with the reason; a
case not listed there must be refused.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from authserver.admin import CIBA
from authserver.models import BackchannelRequest, Consent, PushedAuthorizationRequest
from tests.support.db import audit_events, count, issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource, make_user
from tests.support.flows import Browser, Pkce, code_params, csrf_token, query_of
from tests.support.oauth import tokens_for
from tests.support.responses import (
    assert_html_page,
    assert_json_error,
    assert_no_leak,
    signed_in_user,
)

ISSUER = "http://127.0.0.1:8000"
POST_LOGOUT = "https://rp.example.com/logged-out"
BODY_LIMIT = 256 * 1024
Value = str | bytes


@dataclass
class World:
    """Alice signed in, a client she already uses, one she has never approved, an API."""

    app: Any
    client: Any  # an anonymous user agent (API calls, sign-in attempts)
    browser: Browser  # Alice's signed-in browser
    rp: Any
    fresh: Any
    post: Any
    alice: Any


@dataclass
class Call:
    method: str
    path: str
    params: list[tuple[str, Value]]
    auth: tuple[str, str] | None = None
    as_browser: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    id: str
    kind: str  # "authorize" (page or redirect to the client), "page" or "json"
    params: tuple[str, ...]
    build: Callable[[World], Call]
    issues: bool = False  # success writes tokens (a token endpoint)


@pytest.fixture
def world(app, browser):
    alice = make_user(app, "alice")
    make_resource(app, "https://api.example.com", ("read", "write"))
    scope = "openid profile email offline_access read"
    rp = make_client(
        app,
        "web-rp",
        scope=scope,
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        post_logout_redirect_uris=[POST_LOGOUT],
    )
    fresh = make_client(app, "fresh-rp", scope=scope)
    post = make_client(
        app,
        "post-rp",
        scope="read",
        auth_method="client_secret_post",
        grant_types=["client_credentials"],
        redirect_uris=[],
    )
    assert browser.login("alice", DEFAULT_PASSWORD).status_code == 302
    return World(app, app.test_client(), browser, rp, fresh, post, alice)


# Valid requests, one per endpoint. Parameter order matches Endpoint.params.


def _authorize(method: str, path: str = "/authorize") -> Callable[[World], Call]:
    def build(w: World) -> Call:
        params = code_params(w.fresh.client_id, w.fresh.redirect_uri, Pkce.new())
        return Call(method, path, [(k, params[k]) for k in AUTHORIZE_PARAMS], as_browser=True)

    return build


def _browser_csrf(w: World) -> str:
    return csrf_token(w.browser.client.get("/login").get_data(as_text=True))


def _consent_post(w: World) -> Call:
    call = _authorize("POST", "/consent")(w)
    call.params += [("csrf_token", _browser_csrf(w)), ("decision", "deny")]
    return call


def _login_get(w: World) -> Call:
    return Call("GET", "/login", [("next", "/?after=login")])


def _login_post(w: World) -> Call:
    token = csrf_token(w.client.get("/login").get_data(as_text=True))
    params: list[tuple[str, Value]] = [
        ("username", "alice"),
        ("password", DEFAULT_PASSWORD),
        ("next", "/?after=login"),
        ("csrf_token", token),
    ]
    return Call("POST", "/login", params)


def _logout(method: str, path: str = "/logout") -> Callable[[World], Call]:
    def build(w: World) -> Call:
        id_token = tokens_for(w.browser, w.client, w.rp)["id_token"]
        params: list[tuple[str, Value]] = [
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", POST_LOGOUT),
            ("state", "st-123"),
            ("client_id", w.rp.client_id),
        ]
        if path == "/logout/confirm":
            params.append(("csrf_token", _browser_csrf(w)))
        return Call(method, path, params, as_browser=True)

    return build


def _token_code(w: World) -> Call:
    pkce = Pkce.new()
    code = w.browser.code_for(code_params(w.rp.client_id, w.rp.redirect_uri, pkce))
    params: list[tuple[str, Value]] = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", w.rp.redirect_uri),
        ("code_verifier", pkce.verifier),
    ]
    return Call("POST", "/token", params, auth=w.rp.basic_auth)


def _token_refresh(w: World) -> Call:
    refresh_token = tokens_for(w.browser, w.client, w.rp, scope="openid offline_access")[
        "refresh_token"
    ]
    params: list[tuple[str, Value]] = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("scope", "openid"),
    ]
    return Call("POST", "/token", params, auth=w.rp.basic_auth)


def _token_cc(w: World) -> Call:
    params: list[tuple[str, Value]] = [("grant_type", "client_credentials"), ("scope", "read")]
    return Call("POST", "/token", params, auth=w.rp.basic_auth)


def _token_cc_post(w: World) -> Call:
    params: list[tuple[str, Value]] = [
        ("grant_type", "client_credentials"),
        ("client_id", w.post.client_id),
        ("client_secret", w.post.client_secret or ""),
        ("scope", "read"),
    ]
    return Call("POST", "/token", params)


def _token_endpoint(path: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        token = w.client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=w.rp.basic_auth
        ).get_json()["access_token"]
        params: list[tuple[str, Value]] = [("token", token), ("token_type_hint", "access_token")]
        return Call("POST", path, params, auth=w.rp.basic_auth)

    return build


def _par(w: World) -> Call:
    """A push authenticated with Basic only: the body need not repeat client_id (RFC 9126
    §2.1), so a request here names its client only through its credentials, as at /token."""
    params = code_params(w.rp.client_id, w.rp.redirect_uri, Pkce.new())
    del params["client_id"]
    return Call("POST", "/par", list(params.items()), auth=w.rp.basic_auth)


def _userinfo_post(w: World) -> Call:
    access_token = tokens_for(w.browser, w.client, w.rp)["access_token"]
    return Call("POST", "/userinfo", [("access_token", access_token)])


AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)
PAR_PARAMS = tuple(name for name in AUTHORIZE_PARAMS if name != "client_id")
LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")

ENDPOINTS = [
    Endpoint("authorize_get", "authorize", AUTHORIZE_PARAMS, _authorize("GET")),
    Endpoint("authorize_post", "authorize", AUTHORIZE_PARAMS, _authorize("POST")),
    Endpoint("consent_get", "authorize", AUTHORIZE_PARAMS, _authorize("GET", "/consent")),
    Endpoint(
        "consent_post", "authorize", (*AUTHORIZE_PARAMS, "csrf_token", "decision"), _consent_post
    ),
    Endpoint("login_get", "page", ("next",), _login_get),
    Endpoint("login_post", "page", ("username", "password", "next", "csrf_token"), _login_post),
    Endpoint("logout_get", "page", LOGOUT_PARAMS, _logout("GET")),
    Endpoint("logout_post", "page", LOGOUT_PARAMS, _logout("POST")),
    Endpoint(
        "logout_confirm", "page", (*LOGOUT_PARAMS, "csrf_token"), _logout("POST", "/logout/confirm")
    ),
    Endpoint(
        "token_authorization_code",
        "json",
        ("grant_type", "code", "redirect_uri", "code_verifier"),
        _token_code,
        issues=True,
    ),
    Endpoint(
        "token_refresh_token",
        "json",
        ("grant_type", "refresh_token", "scope"),
        _token_refresh,
        issues=True,
    ),
    Endpoint("token_client_credentials", "json", ("grant_type", "scope"), _token_cc, issues=True),
    Endpoint(
        "token_client_secret_post",
        "json",
        ("grant_type", "client_id", "client_secret", "scope"),
        _token_cc_post,
        issues=True,
    ),
    Endpoint("introspect", "json", ("token", "token_type_hint"), _token_endpoint("/introspect")),
    Endpoint("revoke", "json", ("token", "token_type_hint"), _token_endpoint("/revoke")),
    Endpoint("userinfo_post", "json", ("access_token",), _userinfo_post),
    Endpoint("par", "json", PAR_PARAMS, _par, issues=True),
]
BY_ID = {endpoint.id: endpoint for endpoint in ENDPOINTS}

# How a parameter is broken. "array" repeats the key with a different value (how
# form encoders send lists); "non_utf8" appends raw bytes that are not UTF-8.
MUTATIONS: dict[str, Callable[[Value], list[Value]]] = {
    "missing": lambda value: [],
    "duplicated": lambda value: [value, value],
    "array": lambda value: [value, "other-value"],
    "size_10k": lambda value: ["A" * 10 * 1024],
    "size_100k": lambda value: ["A" * 100 * 1024],
    "non_utf8": lambda value: [_text(value).encode() + b"\xff\xfe\xc3("],
    "nul": lambda value: [_text(value) + "\x00x"],
    "unicode": lambda value: [_text(value) + "\u202e\u2603\u00e9\U0001f600"],
}


def _text(value: Value) -> str:
    return value.decode() if isinstance(value, bytes) else value


# What the server accepts, and why. (endpoint pattern, parameters, mutations, reason)
ACCEPTED: list[tuple[str, set[str], set[str], str]] = [
    (
        "authorize_*",
        {"state", "nonce"},
        {"missing"},
        "state is RECOMMENDED (RFC 6749 §4.1.1), nonce optional in the code flow (OIDC §3.1.2.1)",
    ),
    (
        "consent_*",
        {"state", "nonce"},
        {"missing"},
        "as at /authorize: the consent page carries the authorization request",
    ),
    ("par", {"state", "nonce"}, {"missing"}, "as at /authorize (RFC 9126 §2.1)"),
    ("par", {"nonce"}, {"unicode", "non_utf8"}, "as at /authorize"),
    (
        "*",
        {"scope"},
        {"missing"},
        "scope is optional (RFC 6749 §3.3): the client's default; consent is still asked",
    ),
    (
        "authorize_*",
        {"nonce"},
        {"unicode", "non_utf8"},
        "nonce is an opaque string echoed in the ID token (OIDC §3.1.2.1), any characters",
    ),
    ("consent_*", {"nonce"}, {"unicode", "non_utf8"}, "as at /authorize"),
    (
        "*",
        {"state"},
        {"non_utf8"},
        "bytes that are not UTF-8 reach the app still percent-encoded (Werkzeug), so the state"
        " is printable ASCII (RFC 6749 Appendix A.5) and echoed as sent",
    ),
    (
        "consent_post",
        {"decision", "csrf_token"},
        {"duplicated", "array"},
        "HTML form fields: the first value wins (our own form never repeats them)",
    ),
    (
        "*",
        {"csrf_token"},
        {"unicode"},
        "the signed CSRF token is base64: non-ASCII characters are dropped before the signature"
        " check (itsdangerous), so the genuine token still verifies; nothing is gained by it",
    ),
    (
        "login_*",
        {"next"},
        set(MUTATIONS) - {"nul"},
        "a bad `next` is replaced by / (relative paths only), the sign-in itself is valid",
    ),
    (
        "login_post",
        {"username", "password", "csrf_token"},
        {"duplicated", "array"},
        "HTML form fields: the first value wins (browsers never repeat them)",
    ),
    (
        "logout_*",
        {"id_token_hint", "post_logout_redirect_uri", "client_id"},
        {"missing"},
        "all optional in RP-Initiated Logout §2: the user is asked, or signed out without redirect",
    ),
    (
        "logout_*",
        {"state"},
        {"missing", "unicode", "non_utf8"},
        "state is opaque (RP-Initiated Logout §2) and only echoed, percent-encoded, to a"
        " registered URI; unlike RFC 6749 state it has no character set",
    ),
    (
        "logout_*",
        set(LOGOUT_PARAMS) | {"csrf_token"},
        {"duplicated", "array"},
        "HTML form fields and a GET link: the first value wins and is validated as usual",
    ),
    (
        "token_refresh_token",
        {"scope"},
        {"missing"},
        "RFC 6749 §6: scope is optional on refresh (the original scope)",
    ),
    (
        "introspect",
        {"token"},
        {"size_10k", "size_100k", "non_utf8", "unicode"},
        "RFC 7662 §2.2: an invalid token is answered with active=false, not an error",
    ),
    (
        "revoke",
        {"token"},
        {"size_10k", "size_100k", "non_utf8", "unicode"},
        "RFC 7009 §2.2: invalid tokens do not cause an error response",
    ),
    (
        "introspect",
        {"token_type_hint"},
        {"missing", "size_10k", "size_100k", "non_utf8", "unicode"},
        "RFC 7662 §2.1: the hint is optional and only orders the search",
    ),
    (
        "revoke",
        {"token_type_hint"},
        {"missing", "size_10k", "size_100k", "non_utf8", "unicode"},
        "RFC 7009 §2.1: the hint is optional and only orders the search",
    ),
]

# The RFC error code expected when a required parameter is missing.
MISSING_ERRORS = {
    ("token_*", "grant_type"): "invalid_request",
    ("token_authorization_code", "code"): "invalid_request",
    ("token_authorization_code", "redirect_uri"): "invalid_grant",
    ("token_authorization_code", "code_verifier"): "invalid_request",
    ("token_refresh_token", "refresh_token"): "invalid_request",
    ("token_client_secret_post", "client_id"): "invalid_client",
    ("token_client_secret_post", "client_secret"): "invalid_client",
    ("introspect", "token"): "invalid_request",
    ("revoke", "token"): "invalid_request",
    ("userinfo_post", "access_token"): "invalid_token",
    ("par", "response_type"): "invalid_request",
    ("par", "redirect_uri"): "invalid_request",
    ("par", "code_challenge"): "invalid_request",
}


def _match(table: Any, endpoint: str, param: str) -> Any:
    for (pattern, name), value in table.items():
        if fnmatch.fnmatch(endpoint, pattern) and name == param:
            return value
    return None


def accepted(endpoint: str, param: str, mutation: str) -> bool:
    return any(
        fnmatch.fnmatch(endpoint, pattern) and param in params and mutation in mutations
        for pattern, params, mutations, _ in ACCEPTED
    )


CASES = [
    pytest.param(endpoint, param, mutation, id=f"{endpoint.id}-{param}-{mutation}")
    for endpoint in ENDPOINTS
    for param in endpoint.params
    for mutation in MUTATIONS
]


# Sending and judging.


def send(w: World, call: Call, body: bytes | None = None, content_type: Any = "form") -> Any:
    agent = w.browser.client if call.as_browser else w.client
    encoded = urlencode(call.params)
    if call.method == "GET":
        return agent.get(call.path + "?" + encoded, headers=call.headers, auth=call.auth)
    data = body if body is not None else encoded.encode("ascii")
    kwargs: dict[str, Any] = {"data": data, "headers": call.headers, "auth": call.auth}
    if content_type == "form":
        kwargs["content_type"] = "application/x-www-form-urlencoded"
    elif content_type is not None:
        kwargs["content_type"] = content_type
    return agent.open(call.path, method=call.method, **kwargs)


def mutate(call: Call, param: str, mutation: str) -> Call:
    params: list[tuple[str, Value]] = []
    for name, value in call.params:
        if name == param:
            params.extend((name, item) for item in MUTATIONS[mutation](value))
        else:
            params.append((name, value))
    return replace(call, params=params)


def snapshot(w: World) -> dict[str, Any]:
    return {
        **issued_counts(w.app),
        "consents": count(w.app, Consent),
        "pushed": count(w.app, PushedAuthorizationRequest),
        "browser_user": signed_in_user(w.browser.client),
        "anonymous_user": signed_in_user(w.client),
    }


def check_accepted(w: World, endpoint: Endpoint, response: Any) -> None:
    assert_no_leak(response)
    location = response.headers.get("Location", "")
    if endpoint.id in ("authorize_get", "authorize_post"):
        assert response.status_code == 302 and location.startswith("/consent?"), location
    elif endpoint.id == "consent_get":
        assert "Allow" in assert_html_page(response, 200)
    elif endpoint.id == "consent_post":
        query = query_of(location)
        assert location.startswith(w.fresh.redirect_uri), location
        assert query.get("error") == "access_denied" and query.get("iss") == ISSUER, query
    elif endpoint.id == "par":
        assert response.status_code == 201, response.get_data(as_text=True)[:300]
        assert response.get_json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    elif endpoint.id == "login_get":
        assert 'name="password"' in assert_html_page(response, 200)
    elif endpoint.id == "login_post":
        assert response.status_code == 302 and location.startswith("/"), location
        assert not location.startswith("//"), location
        assert signed_in_user(w.client) == w.alice.id
    elif endpoint.kind == "page":  # logout
        if response.status_code == 302:
            assert location.startswith(POST_LOGOUT), location
        else:
            assert_html_page(response, 200)
    else:
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.mimetype == "application/json"
        assert isinstance(response.get_json(), dict)


def check_refused(w: World, endpoint: Endpoint, response: Any, error: str | None = None) -> None:
    assert_no_leak(response)
    if endpoint.kind == "json":
        body = assert_json_error(response, error)
        if endpoint.id == "userinfo_post" and response.status_code in (401, 403):
            # RFC 6750 §3: MUST on a missing or unusable token; MAY on other errors.
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), body
        return
    location = response.headers.get("Location")
    if endpoint.kind == "authorize" and location:
        query = query_of(location)
        assert urlsplit(location)._replace(query="").geturl() == w.fresh.redirect_uri, location
        assert query.get("error") and query["error"] != "access_denied", query
        assert query.get("iss") == ISSUER and "code" not in query, query
        if error is not None:
            assert query["error"] == error, query
        return
    assert location is None, location
    assert_html_page(response)
    assert 400 <= response.status_code < 500, response.status_code


def check_nothing_written(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after == before


@pytest.mark.parametrize(("endpoint", "param", "mutation"), CASES)
def test_parameter_mutations(world, endpoint, param, mutation):
    """RFC 6749 §3.1/§3.2/§5.2, RFC 6750 §3.1: each parameter missing, repeated, oversized,
    non-UTF-8, with NUL or with unusual unicode is refused cleanly (or accepted as documented)
    and a refused request writes nothing."""
    call = mutate(endpoint.build(world), param, mutation)
    before = snapshot(world)
    response = send(world, call)
    if accepted(endpoint.id, param, mutation):
        check_accepted(world, endpoint, response)
        if not endpoint.issues:
            after = snapshot(world)
            assert {k: v for k, v in after.items() if not k.endswith("_user")} == {
                k: v for k, v in before.items() if not k.endswith("_user")
            }
        return
    error = _match(MISSING_ERRORS, endpoint.id, param) if mutation == "missing" else None
    if mutation == "nul" and endpoint.kind == "json":
        error = "invalid_request"  # no protocol value contains NUL: a malformed request
    check_refused(world, endpoint, response, error)
    check_nothing_written(before, snapshot(world))


CONTENT_TYPES = {
    "json": "application/json",
    "multipart": "multipart/form-data; boundary=xyz",
    "text_plain": "text/plain",
    "no_content_type": None,
}
# Browser forms may be multipart (an HTML form's enctype); protocol endpoints take
# application/x-www-form-urlencoded only (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1).
MULTIPART_OK = {"authorize_post", "consent_post", "login_post", "logout_post", "logout_confirm"}


def _encode(call: Call, kind: str) -> bytes:
    values = {name: _text(value) for name, value in call.params}
    if kind == "json":
        return json.dumps(values).encode()
    if kind == "multipart":
        parts = [
            f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in values.items()
        ]
        return ("".join(parts) + "--xyz--\r\n").encode()
    return urlencode(values).encode()


POST_ENDPOINTS = [e for e in ENDPOINTS if e.id.endswith(("_post", "_confirm")) or e.kind == "json"]


@pytest.mark.parametrize("kind", list(CONTENT_TYPES))
@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=lambda e: e.id)
def test_wrong_content_types(world, endpoint, kind):
    """RFC 6749 §3.2: the token endpoint takes application/x-www-form-urlencoded only (also
    RFC 7009 §2.1, RFC 7662 §2.1, OIDC Core §3.1.2.1 for POST /authorize); a body in another
    encoding is refused and writes nothing."""
    call = endpoint.build(world)
    before = snapshot(world)
    response = send(world, call, body=_encode(call, kind), content_type=CONTENT_TYPES[kind])
    if kind == "multipart" and endpoint.id in MULTIPART_OK:
        check_accepted(world, endpoint, response)
        return
    if endpoint.id == "logout_post":
        # No parameters reach the end-session endpoint: the signed-in user is asked.
        assert "Sign out?" in assert_html_page(response, 200)
        assert signed_in_user(world.browser.client) == world.alice.id
        return
    expected = {"userinfo_post": "invalid_token"}.get(endpoint.id, "invalid_request")
    check_refused(world, endpoint, response, expected if endpoint.kind == "json" else None)
    check_nothing_written(before, snapshot(world))


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=lambda e: e.id)
def test_body_over_limit_is_413(world, endpoint):
    """A body over MAX_CONTENT_LENGTH (256 KiB) is refused with 413 before any work."""
    call = endpoint.build(world)
    call.params.append(("padding", "A" * (BODY_LIMIT + 1024)))
    before = snapshot(world)
    response = send(world, call)
    assert response.status_code == 413
    if endpoint.kind == "json":
        assert_json_error(response, "invalid_request", 413)
    else:
        assert_html_page(response, 413)
    check_nothing_written(before, snapshot(world))


ROUTES = {
    "/authorize": ("GET", "POST"),
    "/consent": ("GET", "POST"),
    "/login": ("GET", "POST"),
    "/logout": ("GET", "POST"),
    "/logout/confirm": ("POST",),
    "/token": ("POST",),
    "/introspect": ("POST",),
    "/revoke": ("POST",),
    "/par": ("POST",),
    "/userinfo": ("GET", "POST"),
    "/.well-known/openid-configuration": ("GET",),
    "/.well-known/oauth-authorization-server": ("GET",),
    "/jwks.json": ("GET",),
    "/": ("GET",),
}
API_ROUTES = {"/token", "/introspect", "/revoke", "/par", "/userinfo", "/jwks.json"}
METHOD_CASES = [
    pytest.param(path, method, id=f"{path}-{method}")
    for path, allowed in ROUTES.items()
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH")
    if method not in allowed
]


@pytest.mark.parametrize(("path", "method"), METHOD_CASES)
def test_wrong_http_method(world, path, method):
    """RFC 9110 §15.5.6: a method the resource does not support gets 405 with `Allow`."""
    before = snapshot(world)
    response = world.browser.client.open(path, method=method)
    assert response.status_code == 405
    allowed = set(response.headers["Allow"].split(", "))
    assert set(ROUTES[path]) <= allowed and method not in allowed
    if path in API_ROUTES or path.startswith("/.well-known/"):
        assert_json_error(response, "invalid_request", 405)
    else:
        assert_html_page(response, 405)
    check_nothing_written(before, snapshot(world))


NO_PARAM_PATHS = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/jwks.json",
]


@pytest.mark.parametrize("path", NO_PARAM_PATHS)
def test_metadata_ignores_junk_query(world, path):
    """OIDC Discovery §4 / RFC 8414 §3: the documents take no parameters; a junk query string
    (repeated, non-UTF-8, unicode, 10 KB) is ignored and the same public document is served."""
    plain = world.client.get(path)
    junk = world.client.get(path + "?x=1&x=2&y=%FF%FE&u=%E2%98%83&big=" + "A" * 10240)
    assert plain.status_code == junk.status_code == 200
    assert_no_leak(junk)
    assert junk.get_json() == plain.get_json()


@pytest.mark.parametrize("path", [*NO_PARAM_PATHS, "/", "/login", "/authorize"])
def test_nul_in_query_is_refused(world, path):
    """No OAuth or OIDC value contains NUL (PostgreSQL text cannot even store one): 400
    before any view runs, JSON for the metadata endpoints and a page for people."""
    before = snapshot(world)
    response = world.browser.client.get(path + "?x=a%00b")
    if path.startswith(("/.well-known/", "/jwks")):
        assert_json_error(response, "invalid_request", 400)
    else:
        assert_html_page(response, 400)
    check_nothing_written(before, snapshot(world))


NUL_PATHS = [
    ("POST", "/approvals/%00"),
    ("POST", "/approvals/a%00b"),
    ("GET", "/connections/%00/connect"),
    ("GET", "/connections/%00/callback"),
    ("POST", "/account/connections/%00/disconnect"),
    ("GET", "/.well-known/openid-configuration%00"),
    ("GET", "/.well-known/%00/x"),
    ("POST", "/token%00"),
    ("GET", "/%00"),
]


@pytest.mark.parametrize(("method", "path"), NUL_PATHS)
def test_nul_in_path_is_refused(world, method, path):
    """A NUL in a path segment is refused like one in a parameter (PostgreSQL text cannot
    store it, so a view looking the segment up would fail): 400 before any view runs, even
    for a signed-in browser's POST with a valid CSRF token, JSON for APIs and a page for
    people; never a 5xx."""
    before = snapshot(world)
    token = _browser_csrf(world)
    data = {"csrf_token": token, "decision": "approve", "password": DEFAULT_PASSWORD}
    response = world.browser.client.open(
        path, method=method, data=data if method == "POST" else None
    )
    if path.startswith(("/.well-known/", "/token")):
        assert_json_error(response, "invalid_request", 400)
    else:
        assert_html_page(response, 400)
    check_nothing_written(before, snapshot(world))


USERINFO_HEADERS = {
    "missing": None,
    "empty_bearer": "Bearer",
    "other_scheme": "Basic YWxpY2U6cHc=",
    "two_values": "Bearer abc def",
    "size_10k": "Bearer " + "A" * 10 * 1024,
    "size_100k": "Bearer " + "A" * 100 * 1024,
    "latin1": "Bearer abc\xff\xfe",
    "unicode_jwt": "Bearer eyJ\u2603.e30.sig",
    "garbage_jwt": "Bearer eyJhbGciOiJub25lIn0.e30.",
}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("case", list(USERINFO_HEADERS))
def test_userinfo_authorization_header(world, case, method):
    """RFC 6750 §3.1: a missing or malformed bearer credential gets 401 with WWW-Authenticate
    Bearer; the body stays RFC-shaped JSON."""
    value = USERINFO_HEADERS[case]
    headers = {"Authorization": value} if value is not None else {}
    before = snapshot(world)
    response = world.client.open("/userinfo", method=method, headers=headers)
    assert_json_error(response, "invalid_token", 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check_nothing_written(before, snapshot(world))


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


# RFC 6749 §2.3.1: Basic client credentials are base64 (RFC 7617 §2) of `id:secret`, each
# form-encoded UTF-8, without control characters (RFC 7617 §2). Anything else is malformed.
MALFORMED_BASIC = {
    "non_utf8": "Basic //46/w==",  # the bytes ff fe 3a ff
    "no_colon": _basic(b"web-rp"),
    "bad_padding": "Basic d2ViLXJwOnNlY3JldA",  # web-rp:secret without its "="
    "pct_invalid_utf8_id": _basic(b"%ff:secret"),
    "pct_invalid_utf8_secret": _basic(b"web-rp:%c3%28"),
    "pct_nul": _basic(b"web-rp%00:secret"),  # PostgreSQL text cannot hold a NUL
    "empty": "Basic ",
    "non_ascii_header": "Basic d2ViLXJwOnNlY3JldA==\xff",
}


def _bc_authorize(w: World) -> Call:
    agent = make_client(w.app, "agent", grant_types=[CIBA], redirect_uris=[], scope="openid")
    params: list[tuple[str, Value]] = [("scope", "openid"), ("login_hint", "alice")]
    return Call("POST", "/bc-authorize", params, auth=agent.basic_auth)


# Every endpoint that authenticates clients: (its audit event, a valid request).
CLIENT_AUTH_ENDPOINTS = [
    pytest.param("token", _token_cc, id="token"),
    pytest.param("token.introspected", _token_endpoint("/introspect"), id="introspect"),
    pytest.param("token.revoked", _token_endpoint("/revoke"), id="revoke"),
    pytest.param("ciba.requested", _bc_authorize, id="bc_authorize"),
    pytest.param("par.pushed", _par, id="par"),
]


def _challenge(response: Any) -> str:
    """Authlib's WWW-Authenticate for a 401 invalid_client (RFC 6749 §5.2)."""
    description = response.get_json()["error_description"].replace('"', "|")
    return f'Basic error="invalid_client", error_description="{description}"'


@pytest.mark.parametrize("post_credentials", [False, True], ids=["header", "header_and_body"])
@pytest.mark.parametrize("case", list(MALFORMED_BASIC))
@pytest.mark.parametrize(("event", "build"), CLIENT_AUTH_ENDPOINTS)
def test_malformed_basic_credentials(world, caplog, event, build, case, post_credentials):
    """RFC 6749 §2.3.1 / §5.2: malformed Basic credentials are invalid_client with 401 and the
    same Basic challenge as a wrong secret, never a 5xx; they are refused before any client
    authenticates, even with valid client_secret_post credentials in the body (§2.3: one
    method per request). Only the refusal is audited, as for a wrong secret."""
    call = build(world)
    wrong_secret = send(world, replace(call, auth=(call.auth[0], "wrong-secret")))
    assert_json_error(wrong_secret, "invalid_client", 401)
    params = list(call.params)
    if post_credentials:
        params += [
            ("client_id", world.post.client_id),
            ("client_secret", world.post.client_secret or ""),
        ]
    malformed = Call("POST", call.path, params, headers={"Authorization": MALFORMED_BASIC[case]})
    before = {**snapshot(world), "ciba": count(world.app, BackchannelRequest)}
    audited = audit_events(world.app, event)
    caplog.clear()
    response = send(world, malformed)
    body = assert_json_error(response, "invalid_client", 401)
    assert body["error_description"] == (
        "The client credentials in the Authorization header are malformed."
    )
    assert response.headers["WWW-Authenticate"] == _challenge(response)
    assert wrong_secret.headers["WWW-Authenticate"] == _challenge(wrong_secret)
    for name in ("Content-Type", "Cache-Control", "Pragma"):
        assert response.headers.get(name) == wrong_secret.headers.get(name), name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    check_nothing_written(before, {**snapshot(world), "ciba": count(world.app, BackchannelRequest)})
    rows = audit_events(world.app, event)
    assert len(rows) == len(audited) + 1
    assert (rows[-1].outcome, rows[-1].details) == (audited[-1].outcome, audited[-1].details)
    assert rows[-1].client_id == (world.post.client_id if post_credentials else None)


# Property tests: random parameters never produce a 5xx, a leak, or a write.

PARAM_NAMES = st.sampled_from(
    [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
        "resource",
        "audience",
        "response_type",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "request",
        "request_uri",
        "response_mode",
    ]
)
GRANT_TYPES = st.sampled_from(
    [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:openid:params:grant-type:ciba",
        "",
    ]
)
VALUES = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=100),
    st.sampled_from(["S256", "plain", "code", "openid", "none", "login", "-1", "1e9"]),
    st.sampled_from(["https://rp.example.com/callback", "http://127.0.0.1:1/callback"]),
    st.sampled_from(["https://api.example.com", "web-rp", "read", "openid read"]),
)
PAIRS = st.lists(st.tuples(st.one_of(PARAM_NAMES, st.text(max_size=20)), VALUES), max_size=12)
FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(grant_type=GRANT_TYPES, pairs=PAIRS, authenticate=st.booleans())
def test_token_endpoint_fuzz(world, grant_type, pairs, authenticate):
    """RFC 6749 §5.2: whatever the parameters, /token answers 200 or an RFC-shaped JSON error
    below 500, and a refusal writes nothing."""
    before = snapshot(world)
    params = [("grant_type", grant_type), *pairs]
    response = world.client.post(
        "/token",
        data=urlencode(params).encode("ascii"),
        content_type="application/x-www-form-urlencoded",
        auth=world.rp.basic_auth if authenticate else None,
    )
    if response.status_code == 200:
        assert_no_leak(response)
        assert response.get_json()["token_type"] == "Bearer"
        return
    assert_json_error(response)
    check_nothing_written(before, snapshot(world))


@FUZZ
@given(pairs=PAIRS, post=st.booleans(), base=st.booleans())
def test_authorize_endpoint_fuzz(world, pairs, post, base):
    """RFC 6749 §4.1.2.1: whatever the parameters, /authorize never fails with a 5xx, never
    redirects anywhere but a registered redirect URI (with `error` and `iss`), and writes
    nothing before the user consents."""
    params: list[tuple[str, Value]] = []
    if base:
        valid = code_params(world.fresh.client_id, world.fresh.redirect_uri, Pkce.new())
        params.extend(valid.items())
    params.extend(pairs)
    before = snapshot(world)
    agent = world.browser.client
    if post:
        response = agent.post(
            "/authorize",
            data=urlencode(params).encode("ascii"),
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = agent.get("/authorize?" + urlencode(params))
    assert_no_leak(response)
    location = response.headers.get("Location")
    if location is None:
        assert_html_page(response)
        assert 400 <= response.status_code < 500
    elif location.startswith("/"):
        assert location.startswith(("/consent?", "/login?")), location
    else:
        target = urlsplit(location)._replace(query="").geturl()
        query = query_of(location)
        assert target in (world.fresh.redirect_uri, world.rp.redirect_uri), location
        assert query.get("error") and query.get("iss") == ISSUER, query
        assert "code" not in query, query
    check_nothing_written(before, snapshot(world))


def test_a_rejected_write_still_answers_with_the_error_page(app, browser, monkeypatch):
    """A request whose own INSERT the database rejects gets the server's error page (500,
    no trace), also for a signed-in person, whose name that page reads through the very
    session the failure left awaiting a rollback."""
    from authserver.models import User
    from authserver.web import context

    make_user(app, "alice")
    browser.login("alice", DEFAULT_PASSWORD)

    def a_duplicate_username() -> str:
        context.db().add(User(username="alice", password_hash="x"))
        context.db().flush()  # the unique username is refused here
        return "unreachable"

    monkeypatch.setitem(app.view_functions, "account.home", a_duplicate_username)
    response = browser.client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in page and "alice" in page
    assert "Traceback" not in page and "IntegrityError" not in page
