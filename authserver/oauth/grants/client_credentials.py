"""Client credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

The token's `sub` is the client. Without a `resource` the audience is this server;
with one (RFC 8707) it is that API, which must be one of the client's allowed audiences
(else invalid_target: a client registered for one API does not get tokens for another
that happens to offer a scope of the same name), and the scope is narrowed to what it
offers.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.hooks import hooked

from ...tokens import INSERT_ACCESS_TOKEN
from ..errors import InvalidTargetError
from ..issuance import access_token_spec, token_body
from ..scopes import OIDC_SCOPES, narrow_to_resources, resolve_resources, scope_list


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client = self.request.client.model
        self.request.resources = resolve_resources(
            self.server.resource, self.request.form.getlist("resource")
        )
        if any(r.identifier not in client.allowed_audiences for r in self.request.resources):
            raise InvalidTargetError("This client may not obtain tokens for that resource.")
        asked = scope_list(self.request.payload.scope)
        if any(scope in OIDC_SCOPES for scope in asked):
            raise InvalidScopeError("OpenID Connect scopes need a user; this grant has none.")
        if not set(asked) <= client.allowed_scopes:
            raise InvalidScopeError("The client may not request this scope.")
        default = [scope for scope in client.scope.split() if scope not in OIDC_SCOPES]
        self.request.scope = " ".join(narrow_to_resources(asked or default, self.request.resources))

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.request.client.model
        spec = access_token_spec(
            self.server.runtime.settings,
            client=client,
            subject=client.client_id,
            scope=self.request.scope,
            resources=self.request.resources,
            grant=None,
        )
        # Nothing read here needs to stay true until the record commits (the client and
        # resource come from the registry): the record goes with the audit row, in a group
        # commit with other requests (authserver/group_commit.py).
        issued, record = self.server.runtime.minter.mint(spec)
        self.server.insert(INSERT_ACCESS_TOKEN, record)
        self.server.record(
            "token.issued",
            client_id=client.client_id,
            details={"grant_type": "client_credentials", "scope": spec.scope, "aud": spec.audience},
        )
        return 200, token_body(issued), self.TOKEN_RESPONSE_HEADER
