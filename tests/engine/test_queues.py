"""Work queues: my open tasks and my teams' unassigned tasks, filtered, oldest first, paginated."""

from __future__ import annotations

from typing import Any

import pytest

from engine import people, queues
from engine.errors import InvalidInput, NotFound
from engine.instances import Funnel
from tests.conftest import FakeClock
from tests.factories import FUNNEL_STAGE_DATA
from tests.people_factories import opportunity, sales_roster


@pytest.fixture
def roster(funnel: Funnel, clock: FakeClock) -> Funnel:
    sales_roster(funnel.engine, now=clock.now)
    return funnel


def test_given_work_for_several_people_then_my_queue_holds_only_mine_oldest_first(
        roster: Funnel, clock: FakeClock) -> None:
    # given alice, bob, nora, alice, bob ... in rotation, one minute apart
    views = []
    for _ in range(6):
        views.append(opportunity(roster, region="north"))
        clock.advance(minutes=1)
    # when
    page = queues.my_tasks(roster.engine, "alice")
    # then
    assert [i.instance_id for i in page.items] == [views[0].id, views[3].id]
    assert (page.total, page.has_more) == (2, False)
    first = page.items[0]
    assert (first.workflow, first.stage, first.team, first.assignee) == (
        "sales_funnel", "Identify opportunity", "sales_north", "alice")
    assert first.created_at < page.items[1].created_at


def test_given_a_long_queue_then_it_pages_and_filters_by_workflow_and_stage(roster: Funnel) -> None:
    ids = [opportunity(roster, region=None, actor="bob").id for _ in range(5)]  # no rule: the creator keeps it
    roster.advance(ids[0], FUNNEL_STAGE_DATA[0], actor="bob")
    # when / then
    first, second = (queues.my_tasks(roster.engine, "bob", limit=2, offset=o) for o in (0, 2))
    assert [i.instance_id for i in first.items + second.items] == ids[1:5]  # ids[0] moved on: a newer task
    assert first.has_more and first.total == 5
    qualification = queues.my_tasks(roster.engine, "bob", stage="Qualification")
    assert [i.instance_id for i in qualification.items] == [ids[0]]
    assert queues.my_tasks(roster.engine, "bob", workflow="service_request").total == 0
    assert queues.my_tasks(roster.engine, "bob", workflow="sales_funnel").total == 5


def test_given_unassigned_work_then_it_shows_in_the_queue_of_its_team_members_and_manager(roster: Funnel) -> None:
    for login in ("carol", "diego"):
        people.deactivate_user(roster.engine, login)
    waiting = [opportunity(roster, region="south").id for _ in range(2)]
    opportunity(roster, region="north")  # assigned: never in a team queue
    # when / then
    for login in ("erin", "sam.south"):
        page = queues.team_queue(roster.engine, login)
        assert [i.instance_id for i in page.items] == waiting
        assert {(i.assignee, i.team) for i in page.items} == {(None, "sales_south")}
    assert queues.team_queue(roster.engine, "alice").total == 0
    assert queues.team_queue(roster.engine, "sam.south", team="sales_south", limit=1).items[0].instance_id == \
        waiting[0]


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda e: queues.my_tasks(e, "bob", limit=0), InvalidInput, "limit must be a whole number from 1 to 200"),
    (lambda e: queues.my_tasks(e, "bob", limit=201), InvalidInput, "limit must be"),
    (lambda e: queues.my_tasks(e, "bob", limit="10"), InvalidInput, "limit must be"),
    (lambda e: queues.my_tasks(e, "bob", offset=-1), InvalidInput, "offset must be a whole number from 0"),
    (lambda e: queues.my_tasks(e, "bob", stage=" "), InvalidInput, "stage must be a non-empty text"),
    (lambda e: queues.my_tasks(e, ""), InvalidInput, "login must be"),
    (lambda e: queues.team_queue(e, "nobody"), NotFound, "no user with login 'nobody'"),
    (lambda e: queues.team_queue(e, "alice", team="sales_south"), InvalidInput,
     "alice is not in team 'sales_south'; their teams: sales_north"),
])
def test_given_bad_queue_parameters_then_refused_naming_the_parameter(
        roster: Funnel, call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(roster.engine)
