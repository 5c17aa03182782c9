"""The demo roster: two regional sales teams, a key-account team and a service desk, with their managers.

One rep has left (inactive) and one is on holiday (absent around `now`), so a fresh demo shows
assignment passing people over, and why.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine import people
from engine.models.people import User

# login, display name, time zone, roles, region, skills, product lines, capacity
USERS: list[tuple[str, str, str, tuple[str, ...], str | None, tuple[str, ...], tuple[str, ...], int | None]] = [
    ("admin", "Funnel Admin", "UTC", ("admin", "process_owner"), None, (), (), None),
    ("mia.north", "Mia Schneider", "Europe/Berlin", ("manager",), "north", (), (), None),
    ("sam.south", "Samuel Okafor", "Europe/Rome", ("manager",), "south", (), (), None),
    ("kai.key", "Kai Lindqvist", "Europe/Stockholm", ("manager", "rep"), None, ("key_account",), (), None),
    ("dana.desk", "Dana Li", "Asia/Shanghai", ("manager", "service_desk"), None, ("senior",), (), None),
    ("alice", "Alice Weber", "Europe/Berlin", ("rep",), "north", ("cranes",), ("cranes", "coil"), 25),
    ("bob", "Bob Novak", "Europe/Berlin", ("rep",), "north", (), ("coil",), 25),
    ("nora", "Nora Jensen", "Europe/Copenhagen", ("rep",), "north", ("cranes",), ("cranes",), 20),
    ("ivan", "Ivan Petrov", "Europe/Berlin", ("rep",), "north", (), ("coil",), 25),
    ("carol", "Carol Rossi", "Europe/Rome", ("rep",), "south", (), ("coil", "tools"), 25),
    ("diego", "Diego Ferreira", "Europe/Madrid", ("rep",), "south", ("cranes",), ("cranes",), 25),
    ("erin", "Erin Byrne", "Europe/Dublin", ("rep",), "south", (), ("tools",), 25),
    ("kim", "Kim Park", "Asia/Seoul", ("rep",), None, ("key_account",), ("coil", "cranes"), 15),
    ("lars", "Lars Holm", "Europe/Oslo", ("rep",), None, ("key_account",), ("coil",), 15),
    ("sue", "Sue Tanaka", "Asia/Tokyo", ("service_desk",), None, ("quality", "senior"), (), 30),
    ("tom", "Tom Brandt", "Europe/Berlin", ("service_desk",), None, ("technical", "logistics"), (), 30),
    ("uma", "Uma Rao", "Asia/Kolkata", ("service_desk",), None, ("complaints", "logistics", "quality"), (), 30),
    ("vic", "Victor Hugo", "Europe/Paris", ("service_desk",), None, ("technical",), (), 30),
]

# name, title, manager, region, members in rotation order
TEAMS: list[tuple[str, str, str, str | None, tuple[str, ...]]] = [
    ("sales_north", "Sales north", "mia.north", "north", ("alice", "bob", "nora", "ivan")),
    ("sales_south", "Sales south", "sam.south", "south", ("carol", "diego", "erin")),
    ("key_accounts", "Key accounts", "kai.key", None, ("kai.key", "kim", "lars")),
    ("service_desk", "Service desk", "dana.desk", None, ("sue", "tom", "uma", "vic")),
]

INACTIVE = ("ivan",)  # left the company; keeps history and membership, gets no new work
ABSENT = (("erin", timedelta(days=-1), timedelta(days=14), "annual leave"),)


def seed(engine: Engine, *, now: datetime) -> dict[str, int]:
    """Create the roster once (no-op when any user exists); return what was made."""
    with Session(engine) as session:
        if session.exec(select(User.id).limit(1)).first() is not None:
            return {"users": 0, "teams": 0, "absences": 0}
    for login, name, zone, roles, region, skills, lines, capacity in USERS:
        people.create_user(engine, login, display_name=name, email=f"{login}@funnel.example", time_zone=zone,
                           roles=roles, region=region, skills=skills, product_lines=lines, capacity=capacity)
    for login in INACTIVE:
        people.deactivate_user(engine, login)
    for name, title, manager, region, members in TEAMS:
        people.create_team(engine, name, title=title, manager=manager, region=region, members=members)
    for login, start, end, reason in ABSENT:
        people.add_absence(engine, login, starts_at=now + start, ends_at=now + end, reason=reason)
    return {"users": len(USERS), "teams": len(TEAMS), "absences": len(ABSENT)}
