"""bench.profile_tick times real ticks: every level it schedules fires, and each statement is named and counted."""

from __future__ import annotations

from bench.profile_tick import profile, report, statement_name


def test_given_a_small_seeded_database_when_profiled_then_every_tick_fires_its_levels_and_its_statements_are_timed(
    db_url: str,
) -> None:
    # given a small seeded database; when three ticks of four levels each are profiled
    found = profile(db_url, levels=4, ticks=3, instances=40, deadlines=300)
    # then every scheduled level fired, each tick took time, and the claim was timed once a tick
    assert found.fired == 12 and found.emails > 0
    assert len(found.ticks) == 3 and all(t > 0 for t in found.ticks)
    postgres = db_url.startswith("postgresql")
    assert found.clock.calls["UPDATE sla_due"] == 3 and found.clock.seconds["UPDATE sla_due"] > 0
    assert (found.clock.wait_calls > 0) == postgres
    # and on PostgreSQL the waits are told apart by cause: the statements and one commit a tick among them
    if postgres:
        assert found.clock.wait_counts["statement"] >= 3 * 3 and found.clock.wait_counts["commit"] == 3
        assert sum(found.clock.wait_counts.values()) == found.clock.wait_calls
        assert "wait: commit" in report(found, kind="test", levels=4)
    assert "12 fired" in report(found, kind="test", levels=4)


def test_statements_are_named_by_kind_and_main_table_not_by_a_subquery() -> None:
    assert statement_name("SELECT a, (SELECT s FROM people_stamp) FROM sla_clock JOIN x") == "SELECT sla_clock"
    assert statement_name("UPDATE sla_due SET x = 1 WHERE id IN (SELECT id FROM sla_due)") == "UPDATE sla_due"
    assert statement_name('INSERT INTO "outbox" (a) VALUES (1)') == "INSERT outbox"
    assert statement_name("WITH taken AS (UPDATE sla_due ...) SELECT ...") == "WITH taken"
