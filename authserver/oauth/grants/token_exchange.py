"""OAuth 2.0 Token Exchange (RFC 8693) for delegation and down-scoping.

An agent presents a user's token (`subject_token`) and optionally its own
(`actor_token`) and receives a short-lived RFC 9068 access token for exactly one
registered resource, with `act` naming the agent when it acts for the user.
Errors follow RFC 8693 §2.2.2: bad or unacceptable tokens are `invalid_request`,
a target the server will not serve is `invalid_target`, wider scope is
`invalid_scope`. Revoking the subject's grant deactivates every exchanged token.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked

from ...models import User, now
from ...registry import ResourceSnapshot
from ...tokens import INSERT_ACCESS_TOKEN, AccessTokenSpec
from ..errors import InvalidTargetError
from ..exchange import federated, policy
from ..exchange.presented import (
    ACCESS_TOKEN,
    SUBJECT_TOKEN_TYPES,
    PresentedToken,
    ReusedRefreshToken,
    UnusableToken,
    read_presented_tokens,
)
from ..issuance import revoke_reused_family, token_body
from ..scopes import resolve_resources, scope_list

# Seconds a subject token must still have for an exchange: its result never outlives it.
MIN_LIFETIME = 5

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    REQUESTED_TOKEN_TYPES = (ACCESS_TOKEN, federated.FEDERATED_TOKEN_TYPE)

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client is not registered for token exchange.")
        self.request.client = client
        self._check_parameters()
        subject, actor = self._read_presented_tokens()
        self.request.subject = subject
        self.request.act = self._delegation(client.model, subject, actor)
        form = self.request.form
        if form.get("requested_token_type") == federated.FEDERATED_TOKEN_TYPE:
            try:
                self.request.connection = federated.load_connection(
                    self.server.db(), form, client.client_id
                )
                self._require_user(subject)
            except OAuth2Error as error:
                known = self.server.db().get(User, subject.subject) is not None
                self._vault_refused(error, subject.subject if known else None)
                raise
            return
        self.request.resource = self._target()
        self._decide(client.model, subject)

    def _check_parameters(self) -> None:
        """RFC 8693 §2.1: required parameters, and actor_token_type only with actor_token."""
        form = self.request.form
        for name in ("subject_token", "subject_token_type"):
            if not form.get(name):
                raise InvalidRequestError(f"Missing '{name}'.")
        if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequestError("Unsupported 'subject_token_type'.")
        if bool(form.get("actor_token")) != bool(form.get("actor_token_type")):
            raise InvalidRequestError("'actor_token' and 'actor_token_type' go together.")
        if form.get("actor_token_type") not in (None, ACCESS_TOKEN):
            raise InvalidRequestError("Unsupported 'actor_token_type'.")
        if form.get("requested_token_type", ACCESS_TOKEN) not in self.REQUESTED_TOKEN_TYPES:
            raise InvalidRequestError("Unsupported 'requested_token_type'.")

    def _read_presented_tokens(self) -> tuple[PresentedToken, PresentedToken | None]:
        form = self.request.form
        names = ["subject_token"] + (["actor_token"] if form.get("actor_token") else [])
        presented = [(form[name], form[f"{name}_type"]) for name in names]
        try:
            # Read outside the request's transaction: the token issued from them is tied to
            # their grant, so revoking it later still reaches this token (introspection
            # reads the grant); and the request then commits in a group commit.
            with self.server.reading() as session:
                tokens = read_presented_tokens(
                    session, self.server.runtime.minter, presented, self.request.client.client_id
                )
        except ReusedRefreshToken as reused:
            revoke_reused_family(self.server, reused.grant)
            name = names[reused.position]
            raise InvalidRequestError(f"The '{name}' is invalid, expired or revoked.") from None
        except UnusableToken as unusable:
            name = names[unusable.position]
            raise InvalidRequestError(f"The '{name}' is invalid, expired or revoked.") from None
        return tokens[0], (tokens[1] if len(tokens) > 1 else None)

    def _target(self) -> ResourceSnapshot:
        """`audience` and `resource` together must name exactly one registered resource server."""
        form = self.request.form
        names = list(dict.fromkeys(form.getlist("audience") + form.getlist("resource")))
        if len(names) != 1:
            raise InvalidTargetError("Name exactly one target with 'audience' or 'resource'.")
        parameter = "resource" if form.getlist("resource") else "audience"
        return resolve_resources(self.server.resource, names, parameter)[0]

    def _delegation(
        self, client: Any, subject: PresentedToken, actor: PresentedToken | None
    ) -> dict[str, Any] | None:
        """The resulting `act`: the subject's own, or this client on top of it when delegating."""
        try:
            if actor is not None:
                policy.check_actor(client, subject, actor)
            if policy.is_delegation(client, subject, actor):
                policy.check_delegation(client, subject)
                return policy.act_claim(client, subject)
            if subject.act:
                # This client's own delegated token, exchanged again: still acting for the
                # user, so still only while its delegation rights last (no link is added).
                policy.check_delegation(client, subject, adds_link=False)
        except policy.PolicyRefusal as refusal:
            raise InvalidRequestError(str(refusal)) from None
        return subject.act

    def _require_user(self, subject: PresentedToken) -> None:
        user = self.server.db().get(User, subject.subject)
        if user is None:
            raise InvalidRequestError("Federated tokens need a subject token of a user.")
        if not user.is_active:  # the subject token's lookup already refuses; kept as a guard
            raise InvalidRequestError("The 'subject_token' is invalid, expired or revoked.")

    def _vault_refused(self, error: OAuth2Error, user_id: str | None) -> None:
        """A refused vault read is audited like a served one (DESIGN "Audit")."""
        details = {"connection": str(self.request.form.get("connection", ""))[:64]}
        details["error"] = str(error.error)
        if reason := getattr(error, "extra", {}).get("reason"):
            details["reason"] = reason
        self.server.record(
            "vault.token_served",
            "refused",
            user_id=user_id,
            client_id=self.request.client.client_id,
            actor_chain=policy.chain_of(self.request.act) or None,
            details=details,
        )

    def _decide(self, client: Any, subject: PresentedToken) -> None:
        try:
            policy.check_audience(client, self.request.resource)
        except policy.PolicyRefusal as refusal:
            raise InvalidTargetError(str(refusal)) from None
        requested = scope_list(self.request.payload.scope)
        scopes, refused = policy.granted_scopes(requested, subject, client, self.request.resource)
        if refused or not scopes:
            raise InvalidScopeError(
                "The requested scope exceeds what the subject token, the "
                "client and the resource allow together."
            )
        self.request.scopes = scopes

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        if getattr(self.request, "connection", None) is not None:
            return self._federated_response()
        client = self.request.client.model
        subject: PresentedToken = self.request.subject
        resource: ResourceSnapshot = self.request.resource
        if subject.expires_at is not None and subject.expires_at - now() < MIN_LIFETIME:
            # Live when read, expiring now: the token would be issued already dead.
            raise InvalidRequestError("The 'subject_token' is invalid, expired or revoked.")
        spec = AccessTokenSpec(
            client_id=client.client_id,
            subject=subject.subject,
            audience=resource.identifier,
            scope=" ".join(self.request.scopes),
            ttl=self.server.runtime.settings.delegated_token_ttl,
            # Never past the subject token: exchanging again before it expires must not
            # turn one access token into a credential that renews itself.
            not_after=subject.expires_at,
            grant_id=subject.grant_id,
            auth_time=subject.auth_time,
            act=self.request.act,
        )
        issued, record = self.server.runtime.minter.mint(spec)
        self.server.insert(INSERT_ACCESS_TOKEN, record)
        chain = policy.chain_of(self.request.act)
        self.server.record(
            "token.exchanged",
            user_id=subject.subject,
            client_id=client.client_id,
            actor_chain=chain or None,
            details={
                "audience": resource.identifier,
                "scope": spec.scope,
                "subject_client": subject.client_id,
                "jti": issued.claims["jti"],
            },
        )
        body = token_body(issued, {"issued_token_type": ACCESS_TOKEN})
        return 200, body, self.TOKEN_RESPONSE_HEADER

    def _federated_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.request.client.model
        subject: PresentedToken = self.request.subject
        connection = self.request.connection
        # The vault runs its own short transactions (and may wait on an upstream):
        # end this request's transaction first so it holds no lock meanwhile.
        self.server.db().commit()
        runtime = self.server.runtime
        try:
            token = federated.serve(
                runtime.vault,
                runtime.settings.issuer,
                connection,
                subject.subject,
                self.request.payload.scope,
            )
        except OAuth2Error as error:
            self._vault_refused(error, subject.subject)
            raise
        self.server.record(
            "vault.token_served",
            user_id=subject.subject,
            client_id=client.client_id,
            actor_chain=policy.chain_of(self.request.act) or None,
            details={
                "connection": connection.name,
                "scope": " ".join(token.scopes),
                "refreshed": token.refreshed,
            },
        )
        return 200, federated.token_body(token), self.TOKEN_RESPONSE_HEADER
