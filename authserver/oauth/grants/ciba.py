"""The CIBA grant at the token endpoint (CIBA Core §10.1, §11).

Poll and ping clients redeem their `auth_req_id` here once the user has decided.
Until then: `authorization_pending`, or `slow_down` (the interval grows by 5 s)
when polled faster than the interval; afterwards `access_denied` or
`expired_token`. Approved requests are redeemed exactly once, and only while the
user is still active: like a refresh (RFC 6749 §5.2), a user disabled since approving
is `invalid_grant`.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from sqlalchemy import select

from ...credentials import digest
from ...models import APPROVED, DENIED, PENDING, BackchannelRequest, User, now
from ..ciba import GRANT_TYPE
from ..ciba.issuance import issue_for_request
from ..errors import (
    AuthorizationPendingError,
    CibaAccessDeniedError,
    ExpiredTokenError,
    SlowDownError,
)

SLOW_DOWN_STEP = 5
INVALID = "The auth_req_id is invalid or was already redeemed."


class CibaGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client is not registered for CIBA.")
        if client.model.backchannel_token_delivery_mode == "push":
            raise UnauthorizedClientError("Push-mode clients receive tokens at their endpoint.")
        self.request.client = client
        value = self.request.form.get("auth_req_id")
        if not value or len(value) > 512:
            raise InvalidRequestError("Missing 'auth_req_id'.")
        row = self.server.db().scalar(
            select(BackchannelRequest)
            .where(BackchannelRequest.auth_req_hash == digest(value))
            .with_for_update()
        )
        if row is None or row.client_id != client.client_id:
            raise InvalidGrantError(INVALID)
        self.request.ciba_request = row

    def _check_state(self, row: BackchannelRequest) -> None:
        if row.status == DENIED:
            raise CibaAccessDeniedError("The user denied the request.")
        if row.status not in (PENDING, APPROVED):
            raise InvalidGrantError(INVALID)
        if row.expires_at <= now():
            raise ExpiredTokenError("The request expired before the user decided.")
        if row.status == PENDING:
            self._pending(row)

    def _check_user(self, row: BackchannelRequest) -> None:
        """The approval no longer holds once its user is disabled (as for refresh tokens)."""
        user = self.server.db().get(User, row.user_id)
        if user is None or not user.is_active:
            raise InvalidGrantError(INVALID)

    def _pending(self, row: BackchannelRequest) -> None:
        moment = time.time()
        too_fast = row.last_polled_at is not None and moment - row.last_polled_at < row.interval
        row.last_polled_at = moment
        if too_fast:
            row.interval += SLOW_DOWN_STEP
        self.server.commit()  # keep the poll time (and a longer interval) although we refuse
        if too_fast:
            raise SlowDownError(f"Poll at most every {row.interval} seconds.")
        raise AuthorizationPendingError("The user has not decided yet.")

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        row: BackchannelRequest = self.request.ciba_request
        self._check_state(row)
        self._check_user(row)
        client = self.request.client.model
        body = issue_for_request(self.server.db(), self.server.runtime, row, client)
        row.status = "redeemed"
        self.server.record(
            "token.issued",
            user_id=row.user_id,
            client_id=client.client_id,
            details={
                "grant_type": GRANT_TYPE,
                "request_id": row.id,
                "scope": body["scope"],
                "authorization_details": row.authorization_details,
            },
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER
