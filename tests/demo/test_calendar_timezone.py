"""Mock calendar provider with CALENDAR_TIMEZONE set (this module overrides calendar_config)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.demo.conftest import CalendarFlow, calendar_settings


@pytest.fixture
def calendar_config(tmp_path: Path) -> dict[str, Any]:
    return calendar_settings(tmp_path, TIMEZONE="Asia/Tokyo")


def test_configured_time_zone_is_used(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """CALENDAR_TIMEZONE: events are local to that zone; offset-less input is read in it."""
    token = calendar_flow.tokens()["access_token"]
    tz = calendar_app.extensions["calendar"].tz
    tomorrow = (datetime.now(tz) + timedelta(days=1)).date().isoformat()
    reply = calendar_flow.api("/freebusy", token, f"{tomorrow}T15:00", f"{tomorrow}T16:00")
    body = reply.json()
    assert body["timezone"] == "Asia/Tokyo"
    assert body["busy"] == [
        {"start": f"{tomorrow}T15:00:00+09:00", "end": f"{tomorrow}T16:00:00+09:00"}
    ]
