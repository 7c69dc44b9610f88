"""`audit list` and `audit verify`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click
from sqlalchemy import select

from .. import audit as audit_log
from ..models import AuditEvent
from .common import emit, json_option, load_runtime


def _row_json(row: AuditEvent) -> dict[str, Any]:
    moment = dt.datetime.fromtimestamp(row.occurred_at_us / 1e6, tz=dt.UTC)
    return {
        "id": row.id,
        "time": moment.isoformat(timespec="milliseconds"),
        "event": row.event,
        "outcome": row.outcome,
        "user_id": row.user_id,
        "client_id": row.client_id,
        "actor_chain": row.actor_chain,
        "ip": row.ip,
        "details": row.details,
        "chain_seq": row.chain_seq,
    }


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("list")
@click.option("--user", "user_id", default=None, help="User id.")
@click.option("--client", "client_id", default=None)
@click.option("--event", default=None, help="Event name, e.g. login or token.issued.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@json_option
def audit_list(
    user_id: str | None, client_id: str | None, event: str | None, limit: int, as_json: bool
) -> None:
    """Newest events first, filtered by user, client and event."""
    runtime = load_runtime()
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    for column, value in (
        (AuditEvent.user_id, user_id),
        (AuditEvent.client_id, client_id),
        (AuditEvent.event, event),
    ):
        if value:
            query = query.where(column == value)
    with runtime.session_factory() as session:
        rows = [_row_json(row) for row in session.scalars(query)]
    lines = [
        f"{r['time']}  {r['event']:<24} {r['outcome']:<9} user={r['user_id'] or '-'} "
        f"client={r['client_id'] or '-'}"
        for r in rows
    ]
    emit(rows, as_json, "\n".join(lines))


HEAD = re.compile(r"^([0-9]{1,18}):([0-9a-f]{64})$")


def _anchor(_ctx: Any, _param: Any, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    match = HEAD.match(value)
    if match is None:
        raise click.BadParameter("expected POSITION:MAC, as `head` in `audit verify --json`")
    return int(match.group(1)), match.group(2)


@audit.command("verify")
@click.option(
    "--since",
    "anchor",
    metavar="POSITION:MAC",
    callback=_anchor,
    help="A head exported earlier (`head` of --json): it must still be in the chain.",
)
@json_option
def audit_verify(anchor: tuple[int, str] | None, as_json: bool) -> None:
    """Link pending rows, then recompute every MAC; exits 1 if anything was changed."""
    runtime = load_runtime()
    try:
        audit_key = runtime.audit_key
    except audit_log.AuditKeyMissing as missing:
        report = {"ok": False, "events": None, "newly_linked": 0, "head": None}
        report["problems"] = [{"kind": "key_missing", "detail": str(missing)}]
        emit(report, as_json, f"key_missing: {missing}")
        raise SystemExit(1) from None
    linked = audit_log.link_all(runtime.session_factory, audit_key)
    with runtime.session_factory() as session:
        problems = audit_log.verify_chain(session, audit_key)
        if anchor is not None:
            problems += audit_log.check_anchor(session, *anchor)
        head = audit_log.current_head(session)
        total = session.query(AuditEvent).count()
    report = {
        "ok": not problems,
        "events": total,
        "newly_linked": linked,
        # Only an intact chain's head is one to export and verify against later.
        "head": f"{head[0]}:{head[1]}" if head and not problems else None,
        "problems": [{"kind": p.kind, "detail": p.detail} for p in problems],
    }
    text = (
        "audit log intact" if not problems else "\n".join(f"{p.kind}: {p.detail}" for p in problems)
    )
    emit(report, as_json, f"{text} ({total} events)")
    if problems:
        raise SystemExit(1)
