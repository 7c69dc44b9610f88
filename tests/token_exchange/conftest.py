"""Fixtures for token exchange: a user signed in through a web client, an agent, an API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from authserver.admin import TOKEN_EXCHANGE
from tests.support.factories import ClientInfo, make_client, make_resource, make_user
from tests.support.flows import Pkce, code_params

API = "https://broker.example.com"
SUBJECT_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
SUBJECT_ID = "urn:ietf:params:oauth:token-type:id_token"


@dataclass
class Setup:
    user_id: str
    web: ClientInfo
    agent: ClientInfo
    tokens: dict[str, str]


def make_agent(
    app,
    client_id="agent",
    may_delegate=True,
    audiences=(API,),
    scope="portfolio:read trade",
    **extra,
):
    return make_client(
        app,
        client_id,
        grant_types=["client_credentials", TOKEN_EXCHANGE],
        redirect_uris=[],
        scope=scope,
        may_delegate=may_delegate,
        allowed_audiences=list(audiences),
        **extra,
    )


def user_tokens(app, browser, web, scope="openid profile portfolio:read trade"):
    browser.login("alice", "correct horse battery staple")
    pkce = Pkce.new()
    code = browser.code_for(code_params(web.client_id, web.redirect_uri, pkce, scope=scope))
    response = browser.client.post(
        "/token",
        auth=web.basic_auth,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": web.redirect_uri,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def setup(app, browser):
    make_resource(app, API, scopes=("portfolio:read", "trade"), name="Broker")
    user = make_user(app, "alice")
    web = make_client(
        app, "web-app", scope="openid profile email offline_access portfolio:read trade"
    )
    agent = make_agent(app)
    return Setup(user.id, web, agent, user_tokens(app, browser, web))


def exchange(client, agent, subject_token, subject_type=SUBJECT_ACCESS, **params):
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": subject_type,
        "audience": API,
    }
    data.update({k: v for k, v in params.items() if v is not None})
    return client.post("/token", data=data, auth=agent.basic_auth)


def signed_in_agent(app, browser):
    """An agent the user signs in to directly (code + PKCE): its own refresh token."""
    agent = make_client(
        app,
        "signin-agent",
        grant_types=["authorization_code", "refresh_token", TOKEN_EXCHANGE],
        scope="openid offline_access portfolio:read",
        may_delegate=True,
        allowed_audiences=[API],
    )
    return agent, user_tokens(app, browser, agent, scope="openid offline_access portfolio:read")
