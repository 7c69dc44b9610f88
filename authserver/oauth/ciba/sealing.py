"""The auth_req_id and notification token of a ping/push request, sealed to its row."""

from __future__ import annotations

import json

from vault import KeyRing, associated_data, seal, unseal

from ...models import BackchannelRequest


def _aad(row: BackchannelRequest) -> bytes:
    return associated_data("ciba_callback", row.id, row.client_id, row.user_id)


def seal_callback(
    keyring: KeyRing, row: BackchannelRequest, auth_req_id: str, notification_token: str
) -> bytes:
    plain = json.dumps({"auth_req_id": auth_req_id, "token": notification_token})
    return seal(keyring, plain.encode("utf-8"), _aad(row))


def open_callback(keyring: KeyRing, row: BackchannelRequest) -> tuple[str, str]:
    """(auth_req_id, client_notification_token)."""
    if row.callback_sealed is None:
        raise ValueError("this request has no callback")
    data = json.loads(unseal(keyring, row.callback_sealed, _aad(row)))
    return data["auth_req_id"], data["token"]
