"""Declarative base with one naming convention for every constraint."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import JSON, BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")
# SQL NULL (not JSON null) for None, so "IS NULL" means absent.
JsonValue = JSON(none_as_null=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def now() -> int:
    """Current time in whole seconds since the epoch (what JWT `iat`/`exp` use)."""
    return int(time.time())


def new_id() -> str:
    return str(uuid.uuid4())
