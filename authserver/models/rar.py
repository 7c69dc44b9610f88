"""Authorization-details types (RFC 9396) that resource servers register."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JsonValue, new_id, now


class AuthorizationDetailType(Base):
    __tablename__ = "authorization_detail_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(100), unique=True)
    resource_server_id: Mapped[str] = mapped_column(
        ForeignKey("resource_servers.id", ondelete="CASCADE"), index=True
    )
    # A JSON Schema (draft 2020-12) every entry of this type must satisfy.
    json_schema: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    # How people see an entry: {"title", "summary" template, "fields": [{name, label, format}]}.
    rendering: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[int] = mapped_column(default=now)
