"""Calendar arithmetic: the provider's time zone, ISO 8601 ranges and event occurrences.

Events are anchored to "today + day_offset" in the provider's local time zone
(``CALENDAR_TIMEZONE``, an IANA name, else the host's local zone), so a range
query materialises them against the date on which it is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .models import Event

MAX_RANGE = timedelta(days=62)


class RangeError(ValueError):
    """A start/end pair that cannot be queried; the message is safe to show the client."""


@dataclass(frozen=True)
class Occurrence:
    title: str
    start: datetime
    end: datetime


def zone(name: str) -> tzinfo | None:
    """The named IANA zone, or None for the host's local zone."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local(day: date, minute: int, tz: tzinfo | None) -> datetime:
    """Aware local datetime for ``minute`` minutes after midnight on ``day``."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    # A naive datetime's astimezone() asks the host for its local offset, DST included.
    return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()


def zone_name(tz: tzinfo | None, now: datetime) -> str:
    if isinstance(tz, ZoneInfo):
        return tz.key
    return now.astimezone().tzname() or "UTC"


def parse_instant(value: str | None, name: str, tz: tzinfo | None) -> datetime:
    """ISO 8601 date-time; one without an offset is read in the calendar's zone."""
    if not value:
        raise RangeError(f"{name} is required (ISO 8601 date-time)")
    # An unencoded "+01:00" offset arrives as " 01:00" after query-string decoding.
    value = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RangeError(f"{name} is not an ISO 8601 date-time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz) if tz is not None else parsed.astimezone()
    return parsed


def parse_range(start: str | None, end: str | None, tz: tzinfo | None) -> tuple[datetime, datetime]:
    """Validated (start, end): end after start and at most 62 days later."""
    begin, finish = parse_instant(start, "start", tz), parse_instant(end, "end", tz)
    if finish <= begin:
        raise RangeError("end must be after start")
    if finish - begin > MAX_RANGE:
        raise RangeError("the range may span at most 62 days")
    return begin, finish


def occurrences(
    events: list[Event], start: datetime, end: datetime, today: date, tz: tzinfo | None
) -> list[Occurrence]:
    """Events overlapping [start, end), sorted by start."""
    found = []
    for event in events:
        day = today + timedelta(days=event.day_offset)
        begin, finish = local(day, event.start_minute, tz), local(day, event.end_minute, tz)
        if begin < end and finish > start:
            found.append(Occurrence(event.title, begin, finish))
    return sorted(found, key=lambda item: item.start)
