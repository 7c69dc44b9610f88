"""Plain factory functions for users, clients and resource servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from authserver.admin import create_client, create_resource, create_user
from authserver.db import transaction
from authserver.models import User

DEFAULT_PASSWORD = "correct horse battery staple"
WEB_REDIRECT = "https://rp.example.com/callback"
LOOPBACK_REDIRECT = "http://127.0.0.1/callback"


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    client_secret: str | None
    redirect_uri: str

    @property
    def basic_auth(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret or "")


def make_user(
    app: Flask,
    username: str = "alice",
    password: str = DEFAULT_PASSWORD,
    email: str | None = None,
    name: str = "",
) -> User:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        return create_user(
            session,
            runtime.passwords,
            username,
            password,
            email or f"{username}@example.com",
            name or username.title(),
        )


def make_client(app: Flask, client_id: str = "web-rp", **options: Any) -> ClientInfo:
    """A confidential web client by default; pass auth_method='none' for a public one."""
    options.setdefault("name", f"Client {client_id}")
    options.setdefault("redirect_uris", [WEB_REDIRECT])
    options.setdefault("scope", "openid profile email offline_access")
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        registered = create_client(session, client_id=client_id, **options)
    uris = options["redirect_uris"]
    return ClientInfo(client_id, registered.client_secret, uris[0] if uris else "")


def make_machine_client(
    app: Flask, client_id: str, scope: str, audiences: list[str], **options: Any
) -> ClientInfo:
    """A confidential client-credentials client allowed to get tokens for `audiences`."""
    return make_client(
        app,
        client_id,
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope=scope,
        allowed_audiences=audiences,
        **options,
    )


def make_public_client(app: Flask, client_id: str = "native", **options: Any) -> ClientInfo:
    options.setdefault("redirect_uris", [LOOPBACK_REDIRECT])
    return make_client(app, client_id, auth_method="none", **options)


def make_resource(
    app: Flask,
    identifier: str = "https://api.example.com",
    scopes: tuple[str, ...] = ("read", "write"),
    client_id: str | None = None,
    name: str = "Example API",
) -> str:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        create_resource(
            session, identifier=identifier, name=name, scopes=list(scopes), client_id=client_id
        )
    return identifier
