"""The people tables kept in memory for escalations: reused while current, never stale after any write.

Each test runs on SQLite and PostgreSQL: the stamp that says a copy is current is written by database
triggers (migration 0022), so writes through the people service, raw SQL and rolled-back transactions
are all covered the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import Session

from engine import people
from engine.directory import Directory
from engine.instances import Funnel
from engine.models.people import PeopleStamp
from tests.people_factories import team, user


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL sent on `engine` meanwhile."""
    sent: list[str] = []

    def log(*args: object) -> None:
        sent.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", log)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", log)


def directory(funnel: Funnel) -> Directory:
    with Session(funnel.engine) as session:
        return Directory(session)


def desk(funnel: Funnel) -> None:
    """Ana and Ben on the desk team that Mia manages; Ola is an admin."""
    user(funnel.engine, "ola", roles=["admin"])
    team(funnel.engine, "desk", ["ana", "ben"], manager="mia")


def stamp(funnel: Funnel) -> int:
    with Session(funnel.engine) as session:
        return int(session.execute(sa.select(PeopleStamp.__table__.c.stamp)).scalar_one())  # type: ignore[attr-defined]


def test_given_nothing_changed_then_the_next_use_reads_only_the_stamp(funnel: Funnel) -> None:
    # given
    desk(funnel)
    first = directory(funnel)
    # when
    with statements(funnel.engine) as sent:
        again = directory(funnel)
    # then
    assert len(sent) == 1 and "people_stamp" in sent[0]
    assert again.people is first.people
    assert again.resolve(["manager", "role:admin"], holder="ana", team=None)[0] == \
        first.resolve(["manager", "role:admin"], holder="ana", team=None)[0]


def test_given_a_copy_when_people_change_through_the_service_then_the_next_use_sees_each_change(
        funnel: Funnel) -> None:
    # given
    desk(funnel)
    assert [r.login for r in directory(funnel).resolve(["manager"], holder="ana", team=None)[0]] == ["mia"]
    # when: the manager changes, a member leaves, an admin is deactivated, an address changes
    people.update_team(funnel.engine, "desk", manager="ola")
    people.remove_member(funnel.engine, "desk", "ben")
    people.deactivate_user(funnel.engine, "ola")
    people.update_user(funnel.engine, "ana", email="ana.new@example.com")
    found = directory(funnel)
    # then
    recipients, unreachable = found.resolve(["assignee", "manager", "role:admin"], holder="ana", team=None)
    assert [(r.login, r.email) for r in recipients] == [("ana", "ana.new@example.com")]
    assert unreachable == ["manager: ola is not an active user with an e-mail address", "role:admin: nobody"]
    assert found.managers(None, "ben") == []
    assert found.managers("desk", None) == ["ola"]


def test_given_a_copy_when_an_administrator_edits_the_tables_in_sql_then_the_next_use_sees_it(
        funnel: Funnel) -> None:
    # given
    desk(funnel)
    before = stamp(funnel)
    assert directory(funnel).user("ben") is not None
    # when
    with Session(funnel.engine) as session:
        session.execute(sa.text("UPDATE app_user SET display_name = 'Benjamin' WHERE login = 'ben'"))
        session.commit()
    # then
    assert stamp(funnel) != before
    found = directory(funnel).user("ben")
    assert found is not None and found.display_name == "Benjamin"


def test_given_a_copy_taken_inside_a_transaction_that_rolls_back_then_it_is_never_used_afterwards(
        funnel: Funnel) -> None:
    # given
    desk(funnel)
    directory(funnel)
    before = stamp(funnel)
    # when: a transaction deactivates Mia, reads the directory (so a copy of that state is taken), rolls back
    with Session(funnel.engine) as session:
        session.execute(sa.text("UPDATE app_user SET active = false WHERE login = 'mia'"))
        inside = Directory(session)
        assert inside.user("mia") is not None and not inside.user("mia").active  # type: ignore[union-attr]
        session.rollback()
    # then: the stamp is back to what it was, and so is the copy
    assert stamp(funnel) == before
    mia = directory(funnel).user("mia")
    assert mia is not None and mia.active
    # and a later committed change gets a stamp the rolled-back one never had
    people.update_user(funnel.engine, "mia", display_name="Mia K.")
    mia = directory(funnel).user("mia")
    assert mia is not None and mia.active and mia.display_name == "Mia K."


def test_given_a_new_team_and_members_then_their_managers_are_found_at_once(funnel: Funnel) -> None:
    # given
    desk(funnel)
    directory(funnel)
    # when
    team(funnel.engine, "field", ["ben", "ola"], manager="ola")
    found = directory(funnel)
    # then: Ben's teams by name (desk, field): Mia, then Ola
    assert found.managers(None, "ben") == ["mia", "ola"]
    assert found.managers(None, "ola") == []  # never the holder themself
    assert found.managers("field", None) == ["ola"]
