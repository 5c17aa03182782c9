"""The people service on the real database: users, teams and their order, absences, the demo roster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel

from engine import people
from engine.errors import Conflict, InvalidInput, NotFound
from engine.instances import Funnel
from engine.models.people import RotationPointer, Team
from engine.roster import TEAMS, USERS
from tests.conftest import FakeClock
from tests.people_factories import team, user

# ---------------------------------------------------------------- users


def test_given_a_new_person_when_registered_then_every_field_is_kept(funnel: Funnel) -> None:
    # when
    made = people.create_user(funnel.engine, "li.wei", display_name="Li Wei", email="li.wei@example.com",
                              time_zone="Asia/Shanghai", roles=["rep", "manager"], region="east",
                              product_lines=["coil"], skills=["cranes", "cranes"], capacity=12,
                              calendar="cn-shanghai")
    # then
    assert people.get_user(funnel.engine, "li.wei") == made
    assert (made.roles, made.skills, made.capacity, made.active) == (("rep", "manager"), ("cranes",), 12, True)
    assert (made.time_zone, made.calendar, made.region) == ("Asia/Shanghai", "cn-shanghai", "east")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("login", "Li Wei", "must be lower-case letters"),
    ("email", "not-an-address", "is not an e-mail address"),
    ("time_zone", "Mars/Olympus", "is not an IANA time zone"),
    ("roles", ["rep", "ceo"], "'ceo' is not one of rep, manager, service_desk, process_owner, admin"),
    ("roles", "rep", "must be a list of texts"),
    ("capacity", 0, "capacity must be a whole number of open tasks from 1"),
    ("capacity", True, "capacity must be a whole number"),
    ("display_name", "  ", "display_name must be a non-empty text"),
])
def test_given_a_bad_field_when_registering_then_refused_naming_it(
        funnel: Funnel, field: str, value: Any, message: str) -> None:
    fields: dict[str, Any] = {"display_name": "Li", "email": "li@example.com", field: value}
    login = fields.pop("login", "li")
    with pytest.raises(InvalidInput) as refused:
        people.create_user(funnel.engine, login, **fields)
    assert message in refused.value.message
    assert refused.value.field == field
    assert people.list_users(funnel.engine) == []


def test_given_a_taken_login_when_registering_again_then_conflict(funnel: Funnel) -> None:
    user(funnel.engine, "alice")
    with pytest.raises(Conflict, match="'alice' already exists"):
        user(funnel.engine, "alice")


def test_given_a_user_when_updated_and_deactivated_then_changes_hold_and_unknown_fields_are_named(
        funnel: Funnel) -> None:
    user(funnel.engine, "bob")
    # when
    people.update_user(funnel.engine, "bob", skills=["cranes"], capacity=None, time_zone="Europe/Berlin")
    gone = people.deactivate_user(funnel.engine, "bob")
    # then
    assert (gone.skills, gone.capacity, gone.time_zone, gone.active) == (("cranes",), None, "Europe/Berlin", False)
    assert [u.login for u in people.list_users(funnel.engine, active_only=True)] == []
    with pytest.raises(InvalidInput, match=r"unknown user field.*salary"):
        people.update_user(funnel.engine, "bob", salary=1)
    with pytest.raises(NotFound, match="no user with login 'nobody'"):
        people.update_user(funnel.engine, "nobody", active=True)


# ---------------------------------------------------------------- teams


def test_given_members_when_a_team_is_created_then_their_order_is_the_rotation_order(funnel: Funnel) -> None:
    made = team(funnel.engine, "sales_north", ["carol", "alice", "bob"], manager="mia")
    assert (made.members, made.manager) == (("carol", "alice", "bob"), "mia")
    assert people.get_team(funnel.engine, "sales_north") == made


def test_given_a_team_when_members_are_added_removed_and_reordered_then_the_order_follows(
        funnel: Funnel) -> None:
    team(funnel.engine, "desk", ["a", "b", "c"])
    user(funnel.engine, "d")
    # when / then
    assert people.add_member(funnel.engine, "desk", "d", position=2).members == ("a", "d", "b", "c")
    assert people.remove_member(funnel.engine, "desk", "b").members == ("a", "d", "c")
    assert people.set_members(funnel.engine, "desk", ["c", "a"]).members == ("c", "a")
    assert people.add_member(funnel.engine, "desk", "b").members == ("c", "a", "b")


@pytest.mark.parametrize(("action", "error", "message"), [
    (lambda e: people.add_member(e, "desk", "a"), Conflict, "already a member"),
    (lambda e: people.add_member(e, "desk", "z", position=9), InvalidInput, "position must be a whole number"),
    (lambda e: people.remove_member(e, "desk", "z"), NotFound, "z is not a member"),
    (lambda e: people.set_members(e, "desk", ["a", "a"]), InvalidInput, "lists someone twice"),
    (lambda e: people.set_members(e, "nope", ["a"]), NotFound, "no team named 'nope'"),
    (lambda e: people.create_team(e, "desk", title="Desk"), Conflict, "already exists"),
    (lambda e: people.create_team(e, "Sales North", title="x"), InvalidInput, "lower-case letters"),
    (lambda e: people.create_team(e, "other", title="x", manager="a"), InvalidInput, "'manager' role first"),
    (lambda e: people.create_team(e, "other", title="x", members=["ghost"]), NotFound, "'ghost'"),
])
def test_given_a_bad_roster_edit_then_refused_with_what_to_fix(
        funnel: Funnel, action: Any, error: type[Exception], message: str) -> None:
    team(funnel.engine, "desk", ["a", "b"])
    user(funnel.engine, "z")
    with pytest.raises(error, match=message):
        action(funnel.engine)
    assert people.get_team(funnel.engine, "desk").members == ("a", "b")


def test_given_a_team_when_its_manager_changes_then_the_new_one_is_kept(funnel: Funnel) -> None:
    team(funnel.engine, "desk", ["a"], manager="m1")
    user(funnel.engine, "m2", roles=["manager"])
    assert people.update_team(funnel.engine, "desk", manager="m2", title="Front desk").manager == "m2"
    assert people.update_team(funnel.engine, "desk", clear_manager=True).manager is None
    assert [t.title for t in people.list_teams(funnel.engine)] == ["Front desk"]


# ---------------------------------------------------------------- absences


def test_given_an_absence_when_recorded_then_listed_and_removable(funnel: Funnel, clock: FakeClock) -> None:
    user(funnel.engine, "erin")
    start = clock.now
    made = people.add_absence(funnel.engine, "erin", starts_at=start, ends_at=start + timedelta(days=3),
                              reason="annual leave")
    assert people.absences(funnel.engine, "erin") == [made]
    people.remove_absence(funnel.engine, made.id)
    assert people.absences(funnel.engine, "erin") == []
    with pytest.raises(NotFound):
        people.remove_absence(funnel.engine, made.id)


@pytest.mark.parametrize(("starts", "ends", "message"), [
    (datetime(2026, 12, 1), datetime(2026, 12, 2, tzinfo=UTC), "starts_at must be a date and time with a time zone"),
    (datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "ends_at must be after starts_at"),
])
def test_given_a_bad_period_when_recording_an_absence_then_refused(
        funnel: Funnel, starts: datetime, ends: datetime, message: str) -> None:
    user(funnel.engine, "erin")
    with pytest.raises(InvalidInput, match=message):
        people.add_absence(funnel.engine, "erin", starts_at=starts, ends_at=ends)


# ---------------------------------------------------------------- the demo roster and the schema


def test_given_an_empty_database_when_the_roster_is_seeded_twice_then_it_is_made_once(
        funnel: Funnel, clock: FakeClock) -> None:
    # when
    made = people.seed_roster(funnel.engine, now=clock.now)
    again = people.seed_roster(funnel.engine, now=clock.now)
    # then
    assert made == {"users": len(USERS), "teams": len(TEAMS), "absences": 1}
    assert again == {"users": 0, "teams": 0, "absences": 0}
    teams = {t.name: t for t in people.list_teams(funnel.engine)}
    assert set(teams) == {"sales_north", "sales_south", "key_accounts", "service_desk"}
    assert all(t.manager for t in teams.values())
    assert not people.get_user(funnel.engine, "ivan").active
    [holiday] = people.absences(funnel.engine, "erin")
    assert holiday.starts_at <= clock.now < holiday.ends_at
    with Session(funnel.engine) as session:  # every team has its rotation pointer from the start
        assert len(session.exec(SQLModel.metadata.tables["rotation_pointer"].select()).all()) == len(TEAMS)
        assert session.get(RotationPointer, 1) is not None and session.get(Team, 1) is not None


def test_given_the_migrated_schema_then_the_people_tables_match_the_models(funnel: Funnel) -> None:
    mine = {"app_user", "team", "team_member", "absence", "rotation_pointer", "assignment_alert"}
    with funnel.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    ours = [d for d in diff if any(f"'{t}'" in repr(d) for t in mine)
            or ("'human_task'" in repr(d) and "'team'" in repr(d))]
    assert ours == []
