"""End to end on loopback: sign in through the agent (code + PKCE, Authlib's client),
exchange the user's token for a broker token (RFC 8693), read the portfolio.

The broker is a separate app that knows the authserver only through discovery.
"""

from __future__ import annotations

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from authserver.admin import TOKEN_EXCHANGE
from tests.support.broker import live_broker
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource, make_user
from tests.support.live import LiveBrowser, live_server

from .conftest import SUBJECT_ACCESS

REDIRECT = "https://agent.example.com/callback"


def _sign_in(server, agent):
    """The user signs in to the agent with code + PKCE through Authlib's OAuth2Session."""
    meta = server.metadata()
    session = OAuth2Session(
        agent.client_id,
        agent.client_secret,
        scope="openid portfolio:read",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
    )
    verifier = "v" * 64
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier
    )
    assert create_s256_code_challenge(verifier) in url
    callback = LiveBrowser(server.url, "alice", DEFAULT_PASSWORD).authorize(url)
    return session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )


def _exchange(server, agent, subject_token, audience):
    token_endpoint = server.endpoint("token_endpoint")
    actor = requests.post(
        token_endpoint, data={"grant_type": "client_credentials"}, auth=agent.basic_auth, timeout=10
    ).json()["access_token"]
    response = requests.post(
        token_endpoint,
        auth=agent.basic_auth,
        timeout=10,
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": SUBJECT_ACCESS,
            "actor_token": actor,
            "actor_token_type": SUBJECT_ACCESS,
            "audience": audience,
            "scope": "portfolio:read",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_agent_reads_portfolio_for_the_user(app, migrated_database, tmp_path):
    """The broker sees the user as `sub` and the agent in `act`; other audiences are refused."""
    with live_server(migrated_database) as server, live_broker(server.url, tmp_path) as broker:
        make_resource(app, broker.url, scopes=("portfolio:read",), name="Broker")
        user = make_user(app, "alice")
        agent = make_client(
            app,
            "agent",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "client_credentials", TOKEN_EXCHANGE],
            scope="openid portfolio:read",
            may_delegate=True,
            allowed_audiences=[broker.url],
        )
        user_token = _sign_in(server, agent)
        # The user's own token is for this server (aud = issuer): the broker refuses it.
        direct = requests.get(
            f"{broker.url}/portfolio",
            timeout=10,
            headers={"Authorization": f"Bearer {user_token['access_token']}"},
        )
        assert direct.status_code == 401
        assert 'error="invalid_token"' in direct.headers["WWW-Authenticate"]
        exchanged = _exchange(server, agent, user_token["access_token"], broker.url)
        claims = jwt.decode(exchanged["access_token"], options={"verify_signature": False})
        assert claims["act"] == {"sub": "agent"} and claims["sub"] == user.id
        portfolio = requests.get(
            f"{broker.url}/portfolio",
            timeout=10,
            headers={"Authorization": f"Bearer {exchanged['access_token']}"},
        )
        assert portfolio.status_code == 200, portfolio.text
        [read] = broker.reads()
        assert read.sub == user.id and read.act == {"sub": "agent"}
        assert read.client_id == "agent" and read.endpoint == "GET /portfolio"
