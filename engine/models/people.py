"""People tables (issue 4): users, teams with an explicit member order, absences, rotation pointers, alerts.

`app_user` is deliberately general (login, contact, roles, active flag): API tokens bind to it later.
Skills, product lines and roles are short JSON lists: rosters are small and read whole, so a list
per user is simpler than link tables and just as fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from engine.clock import utcnow
from engine.models.core import JSONType
from engine.models.types import timestamp

ROLES = ("rep", "manager", "service_desk", "process_owner", "admin")
STRATEGIES = ("round_robin", "least_loaded")




def _json_list() -> Any:
    return Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))


class User(SQLModel, table=True):
    """A person who works tasks (or administers them); what API tokens will bind to."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(max_length=100, unique=True, index=True)
    display_name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    time_zone: str = Field(default="UTC", max_length=64)
    calendar: str = Field(default="standard", max_length=100)
    region: str | None = Field(default=None, max_length=100, index=True)
    roles: list[str] = _json_list()
    product_lines: list[str] = _json_list()
    skills: list[str] = _json_list()
    capacity: int | None = None  # max open tasks; None = no cap
    active: bool = Field(default=True, nullable=False)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
    updated_at: datetime = timestamp(nullable=False, default=utcnow)


class Team(SQLModel, table=True):
    """A group that rules route work to; its manager is alerted when nobody in it can take a task."""

    __tablename__ = "team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    title: str = Field(max_length=200)
    manager_id: int | None = Field(default=None, foreign_key="app_user.id")
    region: str | None = Field(default=None, max_length=100)
    product_lines: list[str] = _json_list()
    created_at: datetime = timestamp(nullable=False, default=utcnow)


class TeamMember(SQLModel, table=True):
    """Membership with an explicit position: the order round-robin walks."""

    __tablename__ = "team_member"
    __table_args__ = (sa.UniqueConstraint("team_id", "user_id", name="uq_team_member"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    position: int


class Absence(SQLModel, table=True):
    """A period [starts_at, ends_at) in which a user gets no new work."""

    __tablename__ = "absence"
    __table_args__ = (sa.CheckConstraint("ends_at > starts_at", name="ck_absence_period"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    starts_at: datetime = timestamp(nullable=False)
    ends_at: datetime = timestamp(nullable=False)
    reason: str | None = Field(default=None, max_length=300)


class RotationPointer(SQLModel, table=True):
    """Who a team's rotation gave work to last (a user, not an index, so roster edits never reset it).

    Locked (SELECT ... FOR UPDATE) by every assignment in the team, so concurrent assignments queue.
    """

    __tablename__ = "rotation_pointer"

    team_id: int = Field(foreign_key="team.id", primary_key=True)
    last_user_id: int | None = Field(default=None, foreign_key="app_user.id")
    last_position: int | None = None  # where the last user stood, in case they have left the team since
    assignments: int = Field(default=0, nullable=False)
    updated_at: datetime | None = timestamp(nullable=True)


class AssignmentAlert(SQLModel, table=True):
    """A task nobody could take (or a rule that cannot be followed): the notification issue mails it."""

    __tablename__ = "assignment_alert"

    id: int | None = Field(default=None, primary_key=True)
    team: str | None = Field(default=None, max_length=100, index=True)
    manager: str | None = Field(default=None, max_length=100)
    instance_id: int = Field(foreign_key="instance.id", index=True)
    task_uuid: str | None = Field(default=None, max_length=36)
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = timestamp(nullable=False)
    delivered_at: datetime | None = timestamp(nullable=True, index=True)


class PeopleStamp(SQLModel, table=True):
    """One row whose `stamp` changes with every write to app_user, team or team_member (database triggers).

    Readers that keep the people tables in memory (engine.directory) check it to know their copy is current.
    A new stamp is never an old one come back (a sequence on PostgreSQL, a random 64-bit value on SQLite), so
    a copy taken inside a transaction that then rolled back can never pass for a later committed state.
    """

    __tablename__ = "people_stamp"

    id: int = Field(primary_key=True)
    stamp: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
