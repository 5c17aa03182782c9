"""The bench seeder writes rows the engine accepts: cloned instances are whole, and scheduled deadlines really
fire through engine.ticker.tick - each once, with the e-mails their level promises, none skipped."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bench.seed import Seeder, counts, instant
from engine.models.sla import SlaDue
from engine.ticker import tick
from notifications.models import OutboxMessage


def test_seeded_clones_and_scheduled_deadlines_fire_exactly_once(db_url: str) -> None:
    seeder = Seeder(db_url, templates=4)
    try:
        seeder.clone_instances(40)
        seeder.add_background(300)
        seeded = counts(seeder.engine)
        assert seeded["instance"] == 40
        assert seeded["human_task"] == 40
        assert seeded["audit_event"] == 80  # created + assigned, as the engine wrote them
        assert seeded["pending"] == seeder.report.pending >= 300
        assert seeded["sla_clock_event"] == seeded["sla_clock"]

        soon = datetime.now(UTC) + timedelta(hours=1)  # background rows are hours to weeks ahead
        burst = seeder.schedule([soon] * 6)
        steady = seeder.schedule([soon + timedelta(milliseconds=k) for k in range(9)])
        seeder.check_ledger(burst, sample=6)
        seeder.check_ledger(steady, sample=9)
        targets = {**burst.targets(), **steady.targets()}
        assert {lv for _, lv in targets} == {"warning", "breach", "head"}

        result = tick(seeder.funnel, now=soon + timedelta(seconds=1), worker_id="test")
        assert (result.total, result.skipped, result.failed) == (15, 0, [])
        again = tick(seeder.funnel, now=soon + timedelta(seconds=2), worker_id="test")
        assert again.total == 0

        with Session(seeder.engine) as session:
            fired = session.exec(select(SlaDue.clock_id, SlaDue.level, SlaDue.fired_at).where(
                col(SlaDue.claimed_by) == "test")).all()
            keys = list(session.exec(select(OutboxMessage.dedupe_key)))
            pending_after = session.exec(select(sa.func.count()).select_from(SlaDue).where(
                col(SlaDue.fired_at).is_(None))).one()
        assert {(c, lv) for c, lv, _ in fired} == set(targets)
        assert len(fired) == len(targets)
        mails = Counter((int(k.split(":")[1]), k.split(":")[3]) for k in keys)
        assert dict(mails) == {t: want for t, (_, want) in targets.items()}
        assert len(keys) == len(set(keys)) == sum(burst.expected_mail) + sum(steady.expected_mail)
        # fired rows leave the higher levels of their clocks pending, at the ledger's own (later) instants
        assert pending_after == seeder.report.pending - len(targets)
        assert all(instant(d) <= soon + timedelta(seconds=1) for d, _ in targets.values())
    finally:
        seeder.close()
