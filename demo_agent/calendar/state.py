"""Per-application state: settings, database, clock and the test fault switch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Final

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings

FAULT_MODES: Final = (
    "none",
    "server_error",
    "hang",
    "omit_refresh_token",
    "invalid_grant",
    "narrow_scope",
    "string_expires_in",
)


@dataclass(frozen=True)
class Faults:
    """How POST /token answers refresh grants (only settable with CALENDAR_TEST_CONTROLS)."""

    mode: str = "none"  # the "token" key of POST /_test/faults
    hang_seconds: float = 30.0
    delay_seconds: float = 0.0


@dataclass
class CalendarState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    tz: tzinfo | None
    clock: Callable[[], float] = time.time
    # Replaced whole, never mutated, so request threads always see a consistent value.
    faults: Faults = field(default_factory=Faults)

    def now(self) -> float:
        return self.clock()


def state() -> CalendarState:
    """The current application's calendar state."""
    value: CalendarState = current_app.extensions["calendar"]
    return value
