"""Registering users, clients and resource servers (used by the CLI, the demo and tests)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any
from urllib.parse import urlsplit

from jsonschema.exceptions import SchemaError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import rar
from .credentials import digest, new_secret_value
from .keys import SUPPORTED_ALGS
from .models import AuthorizationDetailType, Client, ResourceServer, User
from .passwords import Passwords

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
CIBA = "urn:openid:params:grant-type:ciba"
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE, CIBA)
DELIVERY_MODES = ("poll", "ping", "push")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{3,64}$")
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$")  # RFC 6749 §3.3 scope-token
MIN_PASSWORD_LENGTH = 8


class AdminError(ValueError):
    """Input an operator must fix; the message says what."""


@dataclass(frozen=True)
class RegisteredClient:
    client: Client
    client_secret: str | None  # shown once, never stored


def is_email_address(value: str) -> bool:
    """One addr-spec (RFC 5322 §3.4.1) with a domain, nothing else: it becomes a mail header."""
    if len(value) > 254 or any(char.isspace() or ord(char) < 32 for char in value):
        return False
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return bool(address.username and "." in address.domain) and address.addr_spec == value


def create_user(
    session: Session,
    passwords: Passwords,
    username: str,
    password: str,
    email: str | None = None,
    name: str = "",
) -> User:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise AdminError("username: 1-64 of a-z 0-9 . _ -, starting with a letter or digit")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(func.lower(User.username) == username)):
        raise AdminError(f"user {username!r} already exists")
    if email and not is_email_address(email):
        raise AdminError("email: a single address like name@example.com")
    if email and session.scalar(select(User).where(func.lower(User.email) == email.lower())):
        raise AdminError(f"email {email!r} is already used")
    user = User(
        username=username,
        email=email or None,
        email_verified=bool(email),
        name=name,
        password_hash=passwords.hash(password),
    )
    session.add(user)
    session.flush()
    return user


# RFC 3986 §2: characters no URI contains. A browser reads a backslash in an http(s) URL
# as a slash (WHATWG URL), so `http://evil.example\@127.0.0.1/` would pass as loopback here
# and send the code to evil.example.
NOT_IN_URIS = frozenset(' "<>\\^`{|}')
# A host as the CSP form-action source and the consent page show it: a DNS name or an
# IPv4 address (IPv6 literals are checked by urlsplit and kept in brackets).
# A DNS name (RFC 1123 §2.1): dot-separated labels of letters, digits and inner hyphens.
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _valid_host(netloc: str, host: str) -> bool:
    """A DNS name, an IPv4 address (which the name pattern also matches), or an IPv6
    literal in brackets that parses as one."""
    if netloc.startswith("["):
        try:
            return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            return False
    return bool(HOST_NAME.match(host))


def check_redirect_uri(uri: str) -> str:
    """RFC 6749 §3.1.2 and RFC 8252 §7: absolute, no fragment; http only on loopback."""
    if any(char in NOT_IN_URIS or not 0x20 < ord(char) < 0x7F for char in uri):
        raise AdminError(f"redirect URI {uri!r}: only characters a URI may contain (RFC 3986)")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        raise AdminError(f"redirect URI {uri!r}: malformed") from None
    if not parts.scheme or parts.fragment or "#" in uri:
        raise AdminError(f"redirect URI {uri!r}: absolute and without fragment")
    if parts.username is not None or parts.password is not None:
        raise AdminError(f"redirect URI {uri!r}: no user information before the host")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise AdminError(f"redirect URI {uri!r}: http is only allowed on loopback")
    if parts.scheme not in ("http", "https") and "." not in parts.scheme:
        raise AdminError(f"redirect URI {uri!r}: custom schemes must be reverse-DNS (RFC 8252)")
    if parts.scheme in ("http", "https"):
        if not parts.netloc or not _valid_host(parts.netloc, parts.hostname or ""):
            raise AdminError(f"redirect URI {uri!r}: missing or malformed host")
        if parts.port == 0:
            raise AdminError(f"redirect URI {uri!r}: port 0 is no port")
    return uri


def _check_backchannel(
    grant_types: list[str], mode: str | None, endpoint: str | None
) -> tuple[str | None, str | None]:
    """CIBA Core §4: a mode for CIBA clients; ping and push need a notification endpoint."""
    if CIBA not in grant_types:
        if mode or endpoint:
            raise AdminError("backchannel settings need the CIBA grant type")
        return None, None
    mode = mode or "poll"
    if mode not in DELIVERY_MODES:
        raise AdminError(f"backchannel mode must be one of {', '.join(DELIVERY_MODES)}")
    if mode == "poll":
        return mode, None
    if not endpoint:
        raise AdminError(f"{mode} mode needs a client notification endpoint")
    parts = urlsplit(endpoint)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.fragment or not parts.netloc or not (parts.scheme == "https" or loopback):
        raise AdminError("the notification endpoint must be https (http only on loopback)")
    return mode, endpoint


def _check_audience(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc or parts.fragment:
        raise AdminError(f"audience {uri!r}: an absolute URI without fragment")
    return uri


def _check_registered_audience(session: Session, uri: str) -> str:
    """A registered resource server's identifier: a typo would otherwise be allowed silently."""
    _check_audience(uri)
    registered = select(ResourceServer.id).where(ResourceServer.identifier == uri)
    if session.scalar(registered) is None:
        raise AdminError(f"audience {uri!r} is not a registered resource server")
    return uri


def _check_scopes(scope: str) -> str:
    for item in scope.split():
        if not SCOPE_TOKEN.match(item):
            raise AdminError(f"scope {item!r} is not a valid scope token")
    return " ".join(dict.fromkeys(scope.split()))


def create_client(
    session: Session,
    *,
    name: str,
    auth_method: str = "client_secret_basic",
    redirect_uris: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    grant_types: list[str] | None = None,
    scope: str = "openid",
    client_id: str | None = None,
    id_token_alg: str = "RS256",  # noqa: S107 (an algorithm name)
    skip_consent: bool = False,
    may_delegate: bool = False,
    allowed_audiences: list[str] | None = None,
    backchannel_mode: str | None = None,
    backchannel_endpoint: str | None = None,
    self_registered: bool = False,
    require_par: bool = False,
) -> RegisteredClient:
    if auth_method not in AUTH_METHODS:
        raise AdminError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    grant_types = list(dict.fromkeys(grant_types or ["authorization_code", "refresh_token"]))
    if unknown := [g for g in grant_types if g not in GRANT_TYPES]:
        raise AdminError(f"unknown grant types: {', '.join(unknown)}")
    if auth_method == "none" and {"client_credentials", TOKEN_EXCHANGE, CIBA} & set(grant_types):
        raise AdminError("public clients cannot use client_credentials, token exchange or CIBA")
    backchannel_mode, backchannel_endpoint = _check_backchannel(
        grant_types, backchannel_mode, backchannel_endpoint
    )
    if id_token_alg not in SUPPORTED_ALGS:
        raise AdminError(f"id token alg must be one of {', '.join(SUPPORTED_ALGS)}")
    client_id = client_id or secrets.token_urlsafe(16)
    if not CLIENT_ID.match(client_id) or session.get(Client, client_id):
        raise AdminError(f"client id {client_id!r} is invalid or taken")
    uris = [check_redirect_uri(uri) for uri in redirect_uris or []]
    if "authorization_code" in grant_types and not uris:
        raise AdminError("the authorization_code grant needs at least one redirect URI")
    secret = None if auth_method == "none" else new_secret_value()
    client = Client(
        client_id=client_id,
        client_name=name,
        token_endpoint_auth_method=auth_method,
        secret_hash=digest(secret) if secret else None,
        redirect_uris=uris,
        post_logout_redirect_uris=[check_redirect_uri(u) for u in post_logout_redirect_uris or []],
        grant_types=grant_types,
        response_types=["code"] if "authorization_code" in grant_types else [],
        scope=_check_scopes(scope),
        id_token_signed_response_alg=id_token_alg,
        skip_consent=skip_consent,
        may_delegate=may_delegate,
        allowed_audiences=[
            _check_registered_audience(session, uri)
            for uri in dict.fromkeys(allowed_audiences or [])
        ],
        backchannel_token_delivery_mode=backchannel_mode,
        backchannel_client_notification_endpoint=backchannel_endpoint,
        self_registered=self_registered,
        require_pushed_authorization_requests=require_par,
    )
    session.add(client)
    session.flush()
    return RegisteredClient(client, secret)


def change_allowed_audiences(
    session: Session, client_id: str, allow: list[str], disallow: list[str]
) -> tuple[list[str], list[str]]:
    """Add and remove APIs the client may get tokens for; returns (before, after).

    Refused, with nothing changed, for an unknown client, an audience that is not a
    registered resource server (a typo would otherwise be allowed silently), or one both
    added and removed. Removing one the client does not have is not an error.
    """
    client = session.get(Client, client_id, with_for_update=True)
    if client is None:
        raise AdminError(f"no client {client_id!r}")
    if both := set(allow) & set(disallow):
        raise AdminError(f"audience both allowed and disallowed: {', '.join(sorted(both))}")
    for uri in allow:
        _check_registered_audience(session, uri)
    before = list(client.allowed_audiences or [])
    after = [uri for uri in dict.fromkeys([*before, *allow]) if uri not in set(disallow)]
    client.allowed_audiences = after
    session.flush()
    return before, after


DETAIL_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")


def add_detail_type(session: Session, resource: ResourceServer, spec: dict[str, Any]) -> None:
    """Register an RFC 9396 type: {"type", "schema", "rendering"?, "description"?}."""
    name = spec.get("type")
    if not isinstance(name, str) or not DETAIL_TYPE.match(name):
        raise AdminError("authorization details type: a name of letters, digits and . _ : / -")
    if session.scalar(select(AuthorizationDetailType).where(AuthorizationDetailType.type == name)):
        raise AdminError(f"authorization details type {name!r} already exists")
    schema = spec.get("schema")
    try:
        rar.check_schema(schema if isinstance(schema, dict) else {"type": 0})
    except SchemaError as error:
        raise AdminError(f"type {name!r}: not a valid JSON Schema ({error.message})") from None
    rendering = spec.get("rendering") or {}
    if not isinstance(rendering, dict):
        raise AdminError(f"type {name!r}: rendering must be an object")
    try:
        rar.check_rendering(rendering)
    except ValueError as error:
        raise AdminError(f"type {name!r}: {error}") from None
    session.add(
        AuthorizationDetailType(
            type=name,
            resource_server_id=resource.id,
            json_schema=schema,
            rendering=rendering,
            description=str(spec.get("description", ""))[:500],
        )
    )


def create_resource(
    session: Session,
    *,
    identifier: str,
    name: str,
    scopes: list[str],
    client_id: str | None = None,
    detail_types: list[dict[str, Any]] | None = None,
) -> ResourceServer:
    parts = urlsplit(identifier)
    if not parts.scheme or not parts.netloc or parts.fragment:
        raise AdminError("resource identifier: an absolute URI without fragment (RFC 8707)")
    if session.scalar(select(ResourceServer).where(ResourceServer.identifier == identifier)):
        raise AdminError(f"resource {identifier!r} already exists")
    if client_id and session.get(Client, client_id) is None:
        raise AdminError(f"client {client_id!r} does not exist")
    resource = ResourceServer(
        identifier=identifier,
        name=name,
        scopes=_check_scopes(" ".join(scopes)).split(),
        client_id=client_id,
    )
    session.add(resource)
    session.flush()
    for spec in detail_types or []:
        add_detail_type(session, resource, spec)
    session.flush()
    return resource
