"""Persistence models. Every schema change is an Alembic migration."""

from .audit import AuditEvent, AuditHead
from .base import Base, new_id, now
from .ciba import APPROVED, DENIED, PENDING, REDEEMED, BackchannelRequest, Notification
from .clients import Client, ResourceServer
from .grants import (
    AccessTokenRecord,
    AuthorizationCode,
    Consent,
    Grant,
    PushedAuthorizationRequest,
    RefreshToken,
)
from .keys import ServerSecret, SigningKey
from .rar import AuthorizationDetailType
from .ratelimit import RateLimitCounter
from .users import BrowserSession, User

__all__ = [
    "APPROVED",
    "DENIED",
    "PENDING",
    "REDEEMED",
    "AccessTokenRecord",
    "AuditEvent",
    "AuditHead",
    "AuthorizationCode",
    "AuthorizationDetailType",
    "BackchannelRequest",
    "BrowserSession",
    "Base",
    "Client",
    "Consent",
    "Grant",
    "Notification",
    "PushedAuthorizationRequest",
    "RateLimitCounter",
    "RefreshToken",
    "ResourceServer",
    "ServerSecret",
    "SigningKey",
    "User",
    "new_id",
    "now",
]
