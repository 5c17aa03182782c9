"""What the permission rules read about a caller and an instance (engine.permissions), one query each."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engine import auth, people
from engine.errors import NotFound
from engine.instances import Funnel
from engine.permissions import principal_for, work_of
from tests.service_factories import start_slip


def user(funnel: Funnel, login: str, *roles: str) -> None:
    people.create_user(funnel.engine, login, display_name=login.title(), email=f"{login}@example.com", roles=roles)


@pytest.fixture
def teams(funnel: Funnel) -> Funnel:
    """mia manages north (and is in it) and key accounts; alice is in north and key accounts; bob in south only."""
    user(funnel, "mia", "manager")
    user(funnel, "sam", "manager")
    for login in ("alice", "bob", "kim"):
        user(funnel, login, "rep")
    people.create_team(funnel.engine, "north", title="North", manager="mia", members=("alice", "mia"))
    people.create_team(funnel.engine, "keys", title="Key accounts", manager="mia", members=("alice", "kim"))
    people.create_team(funnel.engine, "south", title="South", manager="sam", members=("bob",))
    return funnel


def test_given_teams_then_each_principal_knows_what_it_belongs_to_and_manages(teams: Funnel) -> None:
    mia, alice, bob = (principal_for(teams.engine, login) for login in ("mia", "alice", "bob"))
    assert (mia.teams, mia.managed_teams, mia.managed_members) == (
        frozenset({"north"}), frozenset({"north", "keys"}), frozenset({"alice", "mia", "kim"}))
    assert (alice.teams, alice.managed_teams, alice.managed_members) == (frozenset({"north", "keys"}), frozenset(),
                                                                         frozenset())
    assert (bob.teams, bob.roles) == (frozenset({"south"}), frozenset({"rep"}))


@pytest.mark.parametrize("login", ["mia", "sam", "alice", "bob", "kim", "solo"])
def test_given_a_token_then_verify_reads_the_principal_with_its_teams_in_one_statement(teams: Funnel,
                                                                                        login: str) -> None:
    # given a token of someone in several teams, one team, managing some, or in none
    user(teams, "solo", "rep")
    token = auth.issue(teams.engine, login, actor="root", now=datetime.now(UTC)).token
    expected = principal_for(teams.engine, login)
    statements: list[str] = []
    sa.event.listen(teams.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    # when the token is verified
    principal = auth.verify(teams.engine, token)
    # then it is the principal principal_for builds, read in one statement (managers: one more, for their people)
    assert principal == expected
    assert len(statements) == (2 if login in ("mia", "sam") else 1)


def test_given_a_user_in_no_team_then_the_principal_has_none(funnel: Funnel) -> None:
    user(funnel, "solo", "rep")
    solo = principal_for(funnel.engine, "solo")
    assert (solo.teams, solo.managed_teams, solo.managed_members) == (frozenset(), frozenset(), frozenset())


def test_given_an_instance_with_several_open_tasks_then_work_lists_each_once_in_order(funnel: Funnel) -> None:
    slip = start_slip(funnel, ["quality", "logistics", "sales"])
    work = work_of(funnel.engine, slip.id)
    assert (work.instance_id, work.workflow, work.created_by) == (slip.id, "routing_slip", "author1")
    assert [t[0] for t in work.tasks] == [t.id for t in slip.open_tasks] and len(work.tasks) == 3


def test_given_an_instance_with_no_open_task_then_work_has_none(funnel: Funnel) -> None:
    view = funnel.start("sales_funnel", {}, actor="rep9")
    with funnel.engine.begin() as conn:
        conn.execute(sa.text("UPDATE human_task SET status = 'cancelled' WHERE instance_id = :i"), {"i": view.id})
    work = work_of(funnel.engine, view.id)
    assert (work.assignee, work.tasks) == ("rep9", ())


def test_given_an_unknown_instance_then_work_of_says_so(funnel: Funnel) -> None:
    with pytest.raises(NotFound, match="instance 999 does not exist"):
        work_of(funnel.engine, 999)
