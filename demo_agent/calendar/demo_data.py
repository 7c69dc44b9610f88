"""The mock provider's own demo users and their seeded calendars.

``DEMO_USERS`` is importable without starting anything: ``authserver demo
--seed-only --json`` lists these accounts next to the calendar connection.
Events are stored relative to the current local date (``day_offset`` 1 is
"tomorrow" on whatever day the question is asked), so the demo answers the same
way every day: alice is busy tomorrow 15:00-16:00 (Dentist) and free 09:00-10:00.
"""

from __future__ import annotations

from functools import cache
from typing import Final, NamedTuple

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Counter, Event, User

DEMO_USERS: Final[list[dict[str, str]]] = [
    {"username": "alice", "password": "alice-calendar-pw"},
    {"username": "bob", "password": "bob-calendar-pw"},
]

COUNTERS: Final = ("refresh_grants", "refresh_attempts", "code_grants", "revocations")


class SeedEvent(NamedTuple):
    title: str
    day_offset: int
    start: str  # local "HH:MM"
    end: str


DEMO_EVENTS: Final[dict[str, list[SeedEvent]]] = {
    "alice": [
        SeedEvent("Design review", 0, "13:00", "14:00"),
        SeedEvent("Team stand-up", 1, "10:30", "11:00"),
        SeedEvent("Lunch with Sam", 1, "12:30", "13:30"),
        SeedEvent("Dentist", 1, "15:00", "16:00"),
        SeedEvent("Quarterly planning", 2, "09:00", "12:00"),
        SeedEvent("Flight to Lisbon", 5, "07:00", "10:30"),
    ],
    "bob": [
        SeedEvent("Gym", 1, "08:00", "09:30"),
        SeedEvent("Customer call", 1, "14:00", "15:00"),
        SeedEvent("Interview panel", 3, "10:00", "12:00"),
    ],
}


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@cache
def _password_hash(password: str) -> str:
    # Cached per process: tests create many databases and argon2 is slow on purpose.
    return PasswordHasher().hash(password)


def seed(session: Session) -> None:
    """Insert the demo users, their events and the counters unless already present."""
    for entry in DEMO_USERS:
        username = entry["username"]
        if session.scalar(select(User).where(User.username == username)) is not None:
            continue
        user = User(username=username, password_hash=_password_hash(entry["password"]))
        session.add(user)
        session.flush()
        for item in DEMO_EVENTS.get(username, []):
            session.add(
                Event(
                    user_id=user.id,
                    title=item.title,
                    day_offset=item.day_offset,
                    start_minute=_minutes(item.start),
                    end_minute=_minutes(item.end),
                )
            )
    for name in COUNTERS:
        if session.get(Counter, name) is None:
            session.add(Counter(name=name, value=0))
