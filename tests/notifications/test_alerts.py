"""Assignment alerts (empty pools) become e-mails to the team's manager, once, through the real engine."""

from __future__ import annotations

from sqlmodel import Session

from engine import people
from engine.instances import Funnel
from engine.models.people import AssignmentAlert
from notifications.alerts import enqueue_assignment_alerts
from notifications.models import OutboxMessage
from notifications.smtp import deliver_pending
from tests.conftest import FakeClock
from tests.notifications.smtp_server import SmtpServer
from tests.people_factories import alerts, open_tasks, opportunity, sales_roster
from tests.sla_factories import outbox

BASE = "https://funnel.example"


def outbox_rows(funnel: Funnel) -> list[OutboxMessage]:
    return outbox(funnel.engine)


def convert(funnel: Funnel, clock: FakeClock) -> int:
    with Session(funnel.engine) as session:
        added = enqueue_assignment_alerts(session, clock.now, BASE)
        session.commit()
    return added


def empty_south_pool(funnel: Funnel, clock: FakeClock) -> int:
    """The demo roster with nobody left in the south who can take work; returns the queued instance."""
    sales_roster(funnel.engine, now=clock.now)
    for login in ("carol", "diego"):
        people.deactivate_user(funnel.engine, login)
    return opportunity(funnel, region="south").id


def test_given_an_empty_pool_then_the_manager_gets_one_email_saying_team_task_instance_and_why(
        funnel: Funnel, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given
    instance_id = empty_south_pool(funnel, clock)
    [task] = open_tasks(funnel.engine, instance_id)
    # when
    clock.advance(seconds=1)
    added = convert(funnel, clock)
    clock.advance(seconds=1)
    again = convert(funnel, clock)
    result = deliver_pending(funnel.engine, settings=smtp_server.settings(), now=clock.now)
    # then
    assert (added, again, result.sent) == (1, 0, 1)
    [alert] = alerts(funnel.engine)
    assert alert.delivered_at is not None
    [row] = outbox_rows(funnel)
    assert (row.kind, row.ref, row.dedupe_key) == ("assignment_alert", f"instance:{instance_id}",
                                                   f"assignment_alert:{alert.id}:sam.south")
    [got] = smtp_server.received
    assert got.rcpt_tos == ["sam.south@funnel.example"]
    text = got.part("plain")
    assert "Hello Samuel Okafor" in text and "Sales south" in text and f"instance {instance_id}" in text
    assert task.name in text and got.message["Subject"].startswith(f'Nobody can take "{task.name}" in Sales south')
    assert "carol: inactive" in " ".join(text.split())  # why nobody qualified
    assert "CET (Europe/Rome)" in text  # the manager's zone
    url = f"{BASE}/api/instances/{instance_id}"
    assert url in text and f'href="{url}"' in got.part("html")


def test_given_an_alert_without_a_manager_then_the_admins_are_told_instead(funnel: Funnel, clock: FakeClock) -> None:
    # given an alert naming no manager (the rule named a team that does not exist)
    instance_id = empty_south_pool(funnel, clock)
    with Session(funnel.engine) as session:
        session.add(AssignmentAlert(team="ghosts", manager=None, instance_id=instance_id, task_uuid=None,
                                    reason="The rule names team 'ghosts', which does not exist.", created_at=clock.now))
        session.commit()
    # when
    added = convert(funnel, clock)
    # then one for sam (south) and one for the admin (ghosts)
    assert added == 2
    recipients = {r.dedupe_key.rsplit(":", 1)[1]: r for r in outbox_rows(funnel)}
    assert set(recipients) == {"sam.south", "admin"}
    ghost = recipients["admin"]
    assert ghost.recipients == ["admin@funnel.example"]
    assert "ghosts" in ghost.subject and "Team:      ghosts" in ghost.text and "(a task)" in ghost.text
    assert all(a.delivered_at is not None for a in alerts(funnel.engine))


def test_given_no_alerts_then_nothing_is_queued(funnel: Funnel, clock: FakeClock) -> None:
    assert convert(funnel, clock) == 0
    assert outbox_rows(funnel) == []
