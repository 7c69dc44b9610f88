"""Test controls under ``/_test``, registered only when ``CALENDAR_TEST_CONTROLS`` is on.

They let end-to-end tests of the token vault see and provoke upstream behaviour:
counters of grants, injected token-endpoint faults, and forced access token expiry.
Without the setting the routes do not exist (404).
"""

from __future__ import annotations

import math
from typing import Any, cast

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import CursorResult, update

from .db import transaction
from .errors import InvalidRequest
from .models import AccessToken
from .state import FAULT_MODES, Faults, state
from .tokens import counters

bp = Blueprint("controls", __name__, url_prefix="/_test")


def _seconds(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value < 0 or value > 600:
        raise InvalidRequest(f"{name} must be between 0 and 600")
    return float(value)


def parse_faults(body: Any) -> Faults:
    """``{"token": mode, "hang_seconds": s, "delay_seconds": s}``; missing keys reset."""
    if not isinstance(body, dict):
        raise InvalidRequest("send a JSON object")
    mode = body.get("token", "none")
    if mode not in FAULT_MODES:
        raise InvalidRequest(f"token must be one of {', '.join(FAULT_MODES)}")
    return Faults(
        mode=mode,
        hang_seconds=_seconds(body, "hang_seconds", Faults.hang_seconds),
        delay_seconds=_seconds(body, "delay_seconds", 0.0),
    )


def _faults_body(faults: Faults) -> dict[str, Any]:
    return {
        "token": faults.mode,
        "hang_seconds": faults.hang_seconds,
        "delay_seconds": faults.delay_seconds,
    }


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    with transaction() as db:
        return jsonify(counters(db))


@bp.get("/faults")
def get_faults() -> ResponseReturnValue:
    return jsonify(_faults_body(state().faults))


@bp.post("/faults")
def set_faults() -> ResponseReturnValue:
    faults = parse_faults(request.get_json(silent=True))
    state().faults = faults
    return jsonify(_faults_body(faults))


@bp.post("/expire-access-tokens")
def expire_access_tokens() -> ResponseReturnValue:
    now = state().now()
    with transaction() as db:
        result = db.execute(
            update(AccessToken).where(AccessToken.expires_at > now).values(expires_at=now)
        )
    return jsonify({"expired": cast("CursorResult[Any]", result).rowcount})
