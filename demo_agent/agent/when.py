"""Plain-language times for the calendar tool: "tomorrow at 3pm", "on friday at 10:30".

Understood: a day (today, tonight, tomorrow, the day after tomorrow, a weekday with an
optional "next", or an ISO date), a time (3pm, 3:30 pm, 15:00, noon, midnight) and an
optional duration ("for 30 minutes", "for 2 hours", "for half an hour"). A bare hour
from 1 to 12 without am/pm is ambiguous and gets a question instead of a guess. Times
are in the agent's local time zone (that of `now`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

# Days before or after today a question may name (the calendar looks 62 days ahead).
FARTHEST_DAYS = 366
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY = re.compile(
    r"\b(?:(day after tomorrow)|(yesterday)|(today|tonight)|(tomorrow|tmrw)|(next\s+)?"
    r"(mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|rsday|urday)?"
    r"|(\d{4}-\d{2}-\d{2}))\b"
)
CLOCK = re.compile(r"\b(?:at\s+|@\s*)?(\d{1,2})(?:[:.h](\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?(?=\W|$)")
NAMED = re.compile(r"\b(noon|midday|midnight)\b")
DURATION = re.compile(
    r"\bfor\s+(half an hour|an? hour|\d+(?:\.\d+)?)\s*(hours?|hrs?|h|minutes?|mins?|m)?\b"
)


class Unclear(ValueError):
    """The time is missing or ambiguous; the message is the question to ask."""


@dataclass(frozen=True)
class Slot:
    """A start and a length in minutes; `whole_day` when no time was given."""

    start: datetime
    minutes: int
    whole_day: bool = False


def localize(naive: datetime, tz: tzinfo | None) -> datetime:
    """`naive` in the zone of `now`: a named zone's rules, else the host's (DST included)."""
    if isinstance(tz, ZoneInfo) or tz is UTC:
        return naive.replace(tzinfo=tz)
    return naive.astimezone()


def _day(text: str, today: date) -> tuple[date | None, bool]:
    """(the day named, whether it was a weekday name)."""
    match = DAY.search(text)
    if match is None:
        return None, False
    after, yesterday, same, tomorrow, next_word, weekday, iso = match.groups()
    if after:
        return today + timedelta(days=2), False
    if yesterday:
        return today - timedelta(days=1), False
    if same:
        return today, False
    if tomorrow:
        return today + timedelta(days=1), False
    if iso:
        return date.fromisoformat(iso), False
    target = next(i for i, name in enumerate(WEEKDAYS) if name.startswith(weekday[:3]))
    ahead = (target - today.weekday()) % 7
    return today + timedelta(days=ahead or (7 if next_word else 0)), True


def _clock(text: str) -> time | None:
    named = NAMED.search(text)
    if named:
        return time(0) if named.group(1) == "midnight" else time(12)
    for match in CLOCK.finditer(DURATION.sub(" ", DAY.sub(" ", text))):
        hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), match.group(3)
        if meridiem:
            if not 1 <= hour <= 12:
                raise Unclear(f"{match.group(0).strip()} is not a time I understand.")
            hour = hour % 12 + (12 if meridiem.startswith("p") else 0)
        elif match.group(2) is None and 1 <= hour <= 12:
            raise Unclear(f"Do you mean {hour} am or {hour} pm?")
        if hour > 23 or minute > 59:
            raise Unclear(f"{match.group(0).strip()} is not a time I understand.")
        return time(hour, minute)
    return None


def _minutes(text: str) -> int | None:
    match = DURATION.search(text)
    if match is None:
        return None
    amount, unit = match.groups()
    if amount == "half an hour":
        return 30
    if amount in ("an hour", "a hour"):
        return 60
    value = float(amount)
    return round(value * 60) if not unit or unit.startswith("h") else round(value)


def parse_slot(text: str, now: datetime) -> Slot:
    """The slot a question asks about; `Unclear` carries the clarifying question."""
    lowered = text.lower()
    today = now.date()
    try:
        day, weekday = _day(lowered, today)
    except ValueError:
        raise Unclear("That date does not exist.") from None
    clock = _clock(lowered)
    minutes = _minutes(lowered)
    if day is None and clock is None:
        raise Unclear("When? For example: 'am I free tomorrow at 3pm?'")
    # Before any arithmetic: a day near year 1 or 9999 would overflow it.
    if day is not None and (day - today).days > FARTHEST_DAYS:
        raise Unclear("I can only look 62 days ahead.")
    if day is not None and (today - day).days > FARTHEST_DAYS:
        raise Unclear("That day has already passed.")
    if clock is None:
        assert day is not None  # noqa: S101 (checked just above)
        return _whole_day(day, now)
    start = localize(datetime.combine(day or today, clock), now.tzinfo)
    if weekday and start <= now:  # "on monday at 9" said on a Monday at 10: next week
        start = localize(datetime.combine(start.date() + timedelta(days=7), clock), now.tzinfo)
    return Slot(start, minutes or 60)


def _whole_day(day: date, now: datetime) -> Slot:
    """The rest of today, or all of another day."""
    start = localize(datetime.combine(day, time(0)), now.tzinfo)
    if day == now.date():
        start = max(start, now.replace(second=0, microsecond=0))
    end = localize(datetime.combine(day + timedelta(days=1), time(0)), now.tzinfo)
    return Slot(start, int((end - start).total_seconds() // 60), whole_day=True)
