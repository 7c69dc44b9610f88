"""PKCE (RFC 7636) with S256 only (OAuth 2.1 draft §4.1.1, RFC 9700 §2.1.1).

Authlib's extension accepts `plain` and assumes it when the method is missing;
here `plain` and a missing method are refused, and a public client without a
challenge is refused at the authorization endpoint rather than at redemption.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge


class S256CodeChallenge(CodeChallenge):
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge and not method:
            if grant.request.client.model.is_public:
                raise InvalidRequestError(
                    "Public clients must use PKCE: send 'code_challenge' with method S256."
                )
            return
        if method != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)
