"""CIBA backchannel authentication requests and the notification outbox.

The client's `auth_req_id` is stored only as a digest. For ping and push clients
the server must send it back later (CIBA §10.2, §10.3), so it is also kept sealed
by the vault, together with the client's notification token, bound to the row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntId, JsonValue, new_id, now

PENDING, APPROVED, DENIED, REDEEMED = "pending", "approved", "denied", "redeemed"


class BackchannelRequest(Base):
    __tablename__ = "ciba_requests"

    # Public identifier shown in the approval page's URLs; never the auth_req_id.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    auth_req_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    resources: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    authorization_details: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)
    binding_message: Mapped[str | None] = mapped_column(String(128))
    delivery_mode: Mapped[str] = mapped_column(String(8))
    # Sealed {"auth_req_id", "client_notification_token"} for ping and push clients.
    callback_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    created_at: Mapped[int] = mapped_column(default=now)
    expires_at: Mapped[int] = mapped_column()
    interval: Mapped[int] = mapped_column(default=5)
    last_polled_at: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[int | None] = mapped_column()
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.id", ondelete="SET NULL"))
    # Milliseconds; the approval page's live stream follows changes by this.
    changed_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Notification(Base):
    """An HTTP callback to deliver at least once, with backoff, from any process."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # ciba_ping, ciba_push, webhook, email
    target_url: Mapped[str] = mapped_column(String(2000))
    # Sealed {"headers": {...}, "body": {...}}; may hold tokens for push delivery.
    payload_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, index=True)
    lease_until: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(default=now)
    sent_at: Mapped[int | None] = mapped_column()
