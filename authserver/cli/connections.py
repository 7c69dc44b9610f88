"""`connections create|list`: upstream providers for the token vault."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from vault import upstream
from vault.connect import check_endpoint, create_connection, discovered_issuer
from vault.errors import UpstreamError, VaultError
from vault.models import Connection

from .common import emit, json_option, load_runtime, session_for


def connection_json(connection: Connection) -> dict[str, Any]:
    """Everything but the client secret (stored sealed, never shown again)."""
    return {
        "name": connection.name,
        "display_name": connection.display_name,
        "client_id": connection.client_id,
        "authorize_url": connection.authorize_url,
        "token_url": connection.token_url,
        "revocation_url": connection.revocation_url,
        "discovery_url": connection.discovery_url,
        "issuer": connection.issuer,
        "require_iss": connection.require_iss,
        "scopes": connection.scopes,
        "default_scopes": connection.default_scopes,
        "allowed_clients": connection.allowed_clients,
        "token_endpoint_auth_method": connection.token_endpoint_auth_method,
    }


def _endpoints(discovery_url: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """Explicit URLs win; the rest come from the upstream's discovery document, once its
    issuer is shown to be the one its URL was built from."""
    if not discovery_url:
        return given
    try:
        check_endpoint("discovery URL", discovery_url)  # before fetching anything from it
        document = upstream.discover(discovery_url)
        issuer = discovered_issuer(discovery_url, document)
    except UpstreamError as error:
        raise click.ClickException(f"discovery failed: {error}") from None
    except VaultError as error:
        raise click.ClickException(str(error)) from None
    if given["issuer"] is not None and given["issuer"] != issuer:
        raise click.ClickException("--issuer differs from the discovery document's issuer")
    promises_iss = document.get("authorization_response_iss_parameter_supported") is True
    return {
        "authorize_url": given["authorize_url"] or document.get("authorization_endpoint"),
        "token_url": given["token_url"] or document.get("token_endpoint"),
        "revocation_url": given["revocation_url"] or document.get("revocation_endpoint"),
        "issuer": issuer,
        "require_iss": given["require_iss"] or promises_iss,
    }


@click.group()
def connections() -> None:
    """Upstream OAuth 2.0 / OIDC providers users can connect accounts of."""


@connections.command("create")
@click.option("--name", required=True, help="Short name used in URLs, e.g. calendar.")
@click.option("--display-name", default=None)
@click.option("--discovery-url", default=None, help="RFC 8414 / OIDC discovery document URL.")
@click.option("--authorize-url", default=None)
@click.option("--token-url", default=None)
@click.option("--revocation-url", default=None)
@click.option(
    "--issuer",
    default=None,
    help="The provider's issuer identifier (RFC 8414); taken from discovery when given.",
)
@click.option(
    "--require-iss",
    is_flag=True,
    help="Refuse authorization responses without iss (RFC 9207); set from discovery.",
)
@click.option("--client-id", required=True)
@click.option(
    "--client-secret",
    prompt=True,
    hide_input=True,
    default="",
    help="Stored sealed by the vault; prompted for when not given.",
)
@click.option(
    "--auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(["client_secret_basic", "client_secret_post", "none"]),
)
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope it may grant.")
@click.option("--default-scope", "default_scopes", multiple=True)
@click.option("--authorize-param", "params", multiple=True, help="Extra key=value for /authorize.")
@click.option(
    "--allowed-client",
    "allowed_clients",
    multiple=True,
    help="A client of this server allowed to get federated tokens (repeatable).",
)
@json_option
def connections_create(
    name: str,
    display_name: str | None,
    discovery_url: str | None,
    authorize_url: str | None,
    token_url: str | None,
    revocation_url: str | None,
    issuer: str | None,
    require_iss: bool,
    client_id: str,
    client_secret: str,
    auth_method: str,
    scopes: tuple[str, ...],
    default_scopes: tuple[str, ...],
    params: tuple[str, ...],
    allowed_clients: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register an upstream provider by discovery URL or explicit endpoints."""
    urls = _endpoints(
        discovery_url,
        {
            "authorize_url": authorize_url,
            "token_url": token_url,
            "revocation_url": revocation_url,
            "issuer": issuer,
            "require_iss": require_iss,
        },
    )
    if not urls["authorize_url"] or not urls["token_url"]:
        raise click.ClickException("give --discovery-url or both --authorize-url and --token-url")
    malformed = [item for item in params if "=" not in item or item.startswith("=")]
    if malformed:
        raise click.BadParameter(
            f"expected key=value, got {malformed[0]!r}", param_hint="--authorize-param"
        )
    extra = dict(item.split("=", 1) for item in params)
    runtime = load_runtime()
    with session_for(runtime) as session:
        try:
            connection = create_connection(
                session,
                runtime.keyring,
                runtime.vault.clock,
                name=name,
                display_name=display_name or name.title(),
                client_id=client_id,
                client_secret=client_secret or None,
                authorize_url=str(urls["authorize_url"]),
                token_url=str(urls["token_url"]),
                revocation_url=urls["revocation_url"],
                discovery_url=discovery_url,
                scopes=list(scopes),
                default_scopes=list(default_scopes) or None,
                auth_method=auth_method,
                authorize_params=extra,
                allowed_clients=list(allowed_clients),
                issuer=urls["issuer"],
                require_iss=bool(urls["require_iss"]),
            )
        except VaultError as error:
            raise click.ClickException(str(error)) from None
        data = connection_json(connection)
    emit(data, as_json, json.dumps(data, indent=2))


@connections.command("list")
@json_option
def connections_list(as_json: bool) -> None:
    """List connections (never their secrets)."""
    with session_for(load_runtime()) as session:
        rows = [connection_json(c) for c in session.scalars(select(Connection))]
    emit(rows, as_json, "\n".join(f"{r['name']}\t{r['token_url']}" for r in rows))
