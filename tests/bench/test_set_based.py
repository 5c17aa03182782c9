"""bench.set_based: the what-if fires each due level once, with exactly the e-mails the engine's own resolution
(engine.directory, through engine.sla_mail.people_for) sends, so its figure sizes the same work."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bench.seed import Seeder
from bench.set_based import fire_all
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.sla import SlaClock, SlaDue
from engine.sla_mail import people_for
from notifications.models import OutboxMessage


def _expected_logins(seeder: Seeder, targets: set[tuple[int, str]]) -> dict[tuple[int, str], set[str]]:
    """Per (clock, level): the logins the engine itself would e-mail."""
    policy = seeder.funnel.definitions.latest("sales_funnel").meta.sla
    assert policy is not None
    levels = {lv.name: lv for lv in policy.levels}
    out = {}
    with Session(seeder.engine) as session:
        for clock_id, level in targets:
            clock = session.get(SlaClock, clock_id)
            assert clock is not None
            instance = session.get(Instance, clock.instance_id)
            assert instance is not None
            task = session.exec(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                        HumanTask.task_uuid == clock.task_uuid)).first()
            found, _ = people_for(session, levels[level].notify, instance=instance, task=task)
            out[(clock_id, level)] = {r.login for r in found}
    return out


def test_given_a_scheduled_burst_when_fired_set_based_then_each_level_fires_once_with_the_engines_recipients(
        db_url: str) -> None:
    # given: a seeded database with levels of every kind (warning, breach, head) due at one instant
    seeder = Seeder(db_url, templates=4)
    try:
        seeder.clone_instances(40)
        seeder.add_background(300)
        soon = datetime.now(UTC) + timedelta(hours=1)  # background rows are hours to weeks ahead
        burst = seeder.schedule([soon] * 12)
        targets = burst.targets()
        assert {lv for _, lv in targets} == {"warning", "breach", "head"}
        with Session(seeder.engine) as session:
            audit_before = session.exec(select(sa.func.max(AuditEvent.id))).one() or 0

        # when: two passes of 5 then the rest, and a second run at the same instant
        fired = fire_all(seeder.funnel, seeder.engine, now=soon + timedelta(seconds=1), worker="w", batch=5)
        again = fire_all(seeder.funnel, seeder.engine, now=soon + timedelta(seconds=1), worker="w", batch=5)

        # then: every scheduled level, once, and nothing else
        assert (fired.levels, fired.passes, again.levels) == (12, 3, 0)
        with Session(seeder.engine) as session:
            taken = session.exec(select(SlaDue.clock_id, SlaDue.level).where(col(SlaDue.claimed_by) == "w")).all()
            keys = list(session.exec(select(OutboxMessage.dedupe_key)))
            kinds = Counter(session.exec(select(AuditEvent.kind).where(col(AuditEvent.id) > audit_before)))
        assert sorted(taken) == sorted(targets)
        assert kinds == Counter({"sla_warning": 4, "sla_breach": 4, "sla_escalation": 4})
        # and the e-mails go to exactly the people the engine resolves, one each
        mailed: dict[tuple[int, str], set[str]] = defaultdict(set)
        for key in keys:
            _, clock_id, _, level, login = key.split(":")
            mailed[(int(clock_id), level)].add(login)
        assert len(keys) == fired.mails == sum(burst.expected_mail)
        assert dict(mailed) == _expected_logins(seeder, set(targets))
    finally:
        seeder.close()
