"""Audit rows: one per security event, MAC'd on insert, hash-chained after commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntId, JsonValue


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # Random and covered by the row MAC, so a copied row cannot pass as a new one.
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor_chain: Mapped[list[str] | None] = mapped_column(JsonValue)
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    # HMAC over the row's own fields, written with the row.
    row_mac: Mapped[str] = mapped_column(String(64))
    # Filled in by the chain linker after commit: position and chained HMAC.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    chain_mac: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """The last linked position of the chain, so truncating the tail is detected."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_seq: Mapped[int] = mapped_column(BigInteger)
    chain_mac: Mapped[str] = mapped_column(String(64))
    head_mac: Mapped[str] = mapped_column(String(64))
