"""`users`, `clients` and `resources`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from ..admin import change_allowed_audiences, create_client, create_resource, create_user
from ..audit import AuditEntry, make_row
from ..models import AuthorizationDetailType, Client, ResourceServer, User
from .common import emit, json_option, load_runtime, session_for


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "name": user.name,
        "disabled": user.disabled,
    }


def client_json(client: Client, secret: str | None = None) -> dict[str, Any]:
    data = {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "scope": client.scope,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "may_delegate": client.may_delegate,
        "allowed_audiences": client.allowed_audiences,
        "backchannel_token_delivery_mode": client.backchannel_token_delivery_mode,
        "backchannel_client_notification_endpoint": client.backchannel_client_notification_endpoint,
        "self_registered": bool(client.self_registered),
        "require_pushed_authorization_requests": bool(client.require_pushed_authorization_requests),
    }
    if secret:
        data["client_secret"] = secret
    return data


@click.group()
def users() -> None:
    """People who sign in."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--email", default=None)
@click.option("--name", default="")
@json_option
def users_create(username: str, password: str, email: str | None, name: str, as_json: bool) -> None:
    """Create a user (the password is hashed with argon2id)."""
    runtime = load_runtime()
    with session_for(runtime) as session:
        user = create_user(session, runtime.passwords, username, password, email, name)
        data = user_json(user)
    emit(data, as_json, f"created user {data['username']} ({data['id']})")


@users.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """List users."""
    with session_for(load_runtime()) as session:
        rows = [user_json(u) for u in session.scalars(select(User).order_by(User.username))]
    emit(rows, as_json, "\n".join(f"{r['username']}\t{r['id']}\t{r['email'] or ''}" for r in rows))


@click.group()
def clients() -> None:
    """OAuth clients (applications and agents)."""


@clients.command("create")
@click.option("--name", required=True, help="Shown to people on the consent page.")
@click.option("--client-id", default=None, help="Default: random.")
@click.option(
    "--auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(["client_secret_basic", "client_secret_post", "none"]),
)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    help="Default: authorization_code and refresh_token.",
)
@click.option("--scope", default="openid profile email", show_default=True)
@click.option(
    "--id-token-alg",
    default="RS256",
    show_default=True,
    type=click.Choice(["RS256", "ES256", "EdDSA"]),
)
@click.option("--skip-consent", is_flag=True, help="First-party client: no consent screen.")
@click.option(
    "--may-delegate", is_flag=True, help="Token exchange: may act on behalf of users (act claim)."
)
@click.option(
    "--allowed-audience",
    "audiences",
    multiple=True,
    help="A resource this client may get tokens for, by client credentials or token "
    "exchange (repeatable).",
)
@click.option(
    "--backchannel-mode",
    type=click.Choice(["poll", "ping", "push"]),
    default=None,
    help="CIBA token delivery mode (with the CIBA grant type).",
)
@click.option("--notification-endpoint", default=None, help="CIBA ping/push callback URL.")
@click.option(
    "--require-par",
    is_flag=True,
    help="Accept its authorization requests only when pushed to /par (RFC 9126).",
)
@json_option
def clients_create(
    name: str,
    client_id: str | None,
    auth_method: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    scope: str,
    id_token_alg: str,
    skip_consent: bool,
    may_delegate: bool,
    audiences: tuple[str, ...],
    backchannel_mode: str | None,
    notification_endpoint: str | None,
    require_par: bool,
    as_json: bool,
) -> None:
    """Register a client; its secret is printed once and stored only as a digest."""
    with session_for(load_runtime()) as session:
        registered = create_client(
            session,
            name=name,
            client_id=client_id,
            auth_method=auth_method,
            redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(logout_uris),
            grant_types=list(grant_types) or None,
            scope=scope,
            id_token_alg=id_token_alg,
            skip_consent=skip_consent,
            may_delegate=may_delegate,
            allowed_audiences=list(audiences),
            backchannel_mode=backchannel_mode,
            backchannel_endpoint=notification_endpoint,
            require_par=require_par,
        )
        data = client_json(registered.client, registered.client_secret)
    emit(data, as_json)


@clients.command("list")
@json_option
def clients_list(as_json: bool) -> None:
    """List clients (never their secrets)."""
    with session_for(load_runtime()) as session:
        rows = [client_json(c) for c in session.scalars(select(Client).order_by(Client.client_id))]
    emit(rows, as_json, "\n".join(f"{r['client_id']}\t{r['client_name']}" for r in rows))


@clients.command("audiences")
@click.argument("client_id")
@click.option("--allow", "allow", multiple=True, metavar="URI", help="Allow this API (repeatable).")
@click.option(
    "--disallow", "disallow", multiple=True, metavar="URI", help="Remove this API (repeatable)."
)
@json_option
def clients_audiences(
    client_id: str, allow: tuple[str, ...], disallow: tuple[str, ...], as_json: bool
) -> None:
    """Show or change the APIs a client may get tokens for (client credentials, token
    exchange). Other workers see a change within AUTHSERVER_CLIENT_CACHE_TTL."""
    runtime = load_runtime()
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    with session_for(runtime) as session:
        before, after = change_allowed_audiences(session, client_id, list(allow), list(disallow))
        report = {"client_id": client_id, "allowed_audiences": after}
        if before != after:
            details = {
                "client_id": client_id,
                "allowed": [uri for uri in after if uri not in before],
                "disallowed": [uri for uri in before if uri not in after],
            }
            session.add(
                make_row(
                    audit_key,
                    AuditEntry("clients.audiences_changed", client_id=client_id, details=details),
                )
            )
    emit(report, as_json, "\n".join(after) if after else f"{client_id}: no allowed audiences")


@click.group()
def resources() -> None:
    """Resource servers (APIs) that tokens are issued for."""


@resources.command("create")
@click.option("--identifier", required=True, help="The API's resource URI (token audience).")
@click.option("--name", required=True)
@click.option("--scope", "scopes", multiple=True, help="A scope the API defines (repeatable).")
@click.option("--client-id", default=None, help="The API's own client, for introspection.")
@click.option(
    "--authorization-details-type",
    "type_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help='RFC 9396 type as a JSON file: {"type", "schema", "rendering"} (repeatable).',
)
@json_option
def resources_create(
    identifier: str,
    name: str,
    scopes: tuple[str, ...],
    client_id: str | None,
    type_files: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a resource server, with its authorization-details types and their schemas."""
    detail_types = [_read_json(path) for path in type_files]
    with session_for(load_runtime()) as session:
        resource = create_resource(
            session,
            identifier=identifier,
            name=name,
            scopes=list(scopes),
            client_id=client_id,
            detail_types=detail_types,
        )
        data = _resource_json(session, resource)
    emit(data, as_json)


def _read_json(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise click.ClickException(f"{path}: expected a JSON object")
    return value


def _resource_json(session: Any, resource: ResourceServer) -> dict[str, Any]:
    types = session.scalars(
        select(AuthorizationDetailType).where(
            AuthorizationDetailType.resource_server_id == resource.id
        )
    )
    data = resource.describe()
    data["authorization_details_types"] = [
        {"type": row.type, "schema": row.json_schema, "rendering": row.rendering} for row in types
    ]
    return data


@resources.command("list")
@json_option
def resources_list(as_json: bool) -> None:
    """List resource servers."""
    with session_for(load_runtime()) as session:
        rows = [_resource_json(session, r) for r in session.scalars(select(ResourceServer))]
    emit(rows, as_json, "\n".join(f"{r['identifier']}\t{' '.join(r['scopes'])}" for r in rows))
