"""Tokens for an approved CIBA request (CIBA Core §10.1.1, §10.3.1; RFC 9396 §7).

The access token lives five minutes by default, is bound to the resource, and
carries exactly the approved `authorization_details`. No refresh token: a token
for one approved action must not be renewable into more of them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from sqlalchemy.orm import Session

from ...models import BackchannelRequest, Client, Grant
from ...registry import ClientSnapshot
from ...runtime import Runtime
from ..issuance import access_token_spec, token_body
from ..scopes import resolve_resources, scope_list

AUTH_REQ_ID_CLAIM = "urn:openid:params:jwt:claim:auth_req_id"


def issue_for_request(
    session: Session,
    runtime: Runtime,
    row: BackchannelRequest,
    client: Client | ClientSnapshot,
    auth_req_id: str | None = None,
) -> dict[str, Any]:
    """The token response; for push, the ID token carries `auth_req_id` (CIBA §10.3.1)."""
    grant = session.get(Grant, row.grant_id) if row.grant_id else None
    resources = resolve_resources(
        lambda name: runtime.registry.resource(lambda: nullcontext(session), name), row.resources
    )
    spec = access_token_spec(
        runtime.settings,
        client=client,
        subject=row.user_id,
        scope=row.scope,
        resources=resources,
        grant=grant,
        ttl=runtime.settings.delegated_token_ttl,
        auth_time=grant.auth_time if grant else None,
        authorization_details=row.authorization_details,
    )
    issued = runtime.minter.access_token(session, spec)
    body = token_body(issued)
    if "openid" in scope_list(row.scope):
        extra = {AUTH_REQ_ID_CLAIM: auth_req_id} if auth_req_id else None
        body["id_token"] = runtime.minter.id_token(
            client_id=client.client_id,
            alg=client.id_token_signed_response_alg,
            subject=row.user_id,
            auth_time=spec.auth_time,
            nonce=None,
            access_token=issued.token,
            extra_claims=extra,
        )
    return body
