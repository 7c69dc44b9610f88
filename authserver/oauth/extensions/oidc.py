"""OpenID Connect on the code and refresh grants (OIDC Core §3.1.3.3, §3.1.3.6, §12.2).

Adds an ID token whenever the grant includes `openid`: `sub`, `aud`, `nonce` from
the authorization request, `auth_time`, and `at_hash`, signed with the client's
`id_token_signed_response_alg` (RS256 unless registered otherwise).
"""

from __future__ import annotations

from typing import Any

from ..scopes import scope_list


class OpenIDConnect:
    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.add_id_token)

    def add_id_token(self, grant: Any, response: tuple[int, dict[str, Any], Any]) -> None:
        _, token, _ = response
        request = grant.request
        granted = request.grant.scope if getattr(request, "grant", None) else ""
        if "openid" not in scope_list(granted):
            return
        if grant.GRANT_TYPE == "refresh_token" and request.payload.scope is not None:
            # RFC 6749 §6: a refresh may ask for less than the grant. Asked without
            # `openid`, the answer is an access token for that scope alone.
            if "openid" not in scope_list(request.payload.scope):
                return
        code = request.authorization_code
        client = request.client.model
        token["id_token"] = grant.server.runtime.minter.id_token(
            client_id=client.client_id,
            alg=client.id_token_signed_response_alg,
            subject=request.user.id,
            auth_time=request.grant.auth_time,
            nonce=code.nonce if code is not None else None,
            access_token=token.get("access_token"),
        )
