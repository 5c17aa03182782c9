"""What-if: fire a burst of escalation levels with set-based SQL on our own schema, to size that redesign.

`python -m bench.set_based [--kind sqlite|postgresql] [--quick] [--workers N] [--batch B]` seeds the timer
scenario's database (bench.seed: 100,000 instances, 1,000,000 open deadlines), schedules a burst of 100,000
levels due at one instant, and fires it NOT through engine.ticker but with a handful of statements per
transaction and no Python per level:
1. the claim: one UPDATE marks the due rows (first `batch` by due time) fired by this worker; on PostgreSQL
   (`FOR UPDATE SKIP LOCKED`) it returns their ids, which the next statements take as one array; on SQLite
   they go through a temporary table first;
2. one INSERT .. SELECT writes an audit entry per level: its kind, stage and row version from the joined
   instance, and a compact document naming the clock, cycle, level and due row;
3. one INSERT .. SELECT per (definition version, level, notify token) writes the e-mails, the recipients by
   joins that follow engine.directory's rules: `assignee` (the ready task's holder, else the instance's),
   `manager` (of the task's team, else of the holder's teams, never the holder), `role:<role>`,
   `user:<login>`, each an active user with an e-mail address; the outbox's dedupe key keeps one per person.
`python -m bench.timers --what-if` runs it through the timers scenario's phases too (steady and burst), beside
ours and the floor. It prints the time from the first claim to the last commit, and the e-mails queued against
the number the engine's own resolution expects (bench.seed counts them with engine.sla_mail.people_for).

What it leaves out, and a real set-based ticker would have to move elsewhere (see the benchmark issue's
notes): the per-level re-check against the ledger (it trusts that due rows are kept exact, which the SLA
listener does in the same transaction as every ledger change; a changed calendar file would need pending rows
re-derived), the e-mail's figures and the audit entry's text (derived from the append-only ledger as of
`fired_at`, at delivery and on read), and the list of unreachable names. The rows it writes are for measuring
only: the audit document is not packed and the e-mail context is not renderable, so it runs on the bench's
own throwaway database, never on a served one.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bench.common import database
from bench.seed import Scheduled, Seeder, seed, us
from engine.directory import ASSIGNEE, MANAGER
from engine.instances import Funnel

LEASE_US = 60_000_000
_PICK = ("SELECT id, clock_id, cycle, level, severity FROM sla_due WHERE fired_at IS NULL AND due_at <= :now "
         "AND (claimed_by IS NULL OR lease_until < :now) ORDER BY due_at, id LIMIT :batch")
_TAKEN = "taken_now"  # SQLite: a temporary table of the taken rows
# PostgreSQL: a temporary table created per pass (ON COMMIT DROP) wrote the catalog, ~40 ms a pass, the steady
# stream's whole budget; it is now kept per connection, a cost not measured again. An id array joined with 10,000
# ids planned badly (a 100k burst: 11.3 s against 4.4 s). So: the array below this batch size
TEMP_TABLE_FROM = 1_000
_TAKEN_IDS = "(SELECT id, clock_id, cycle, level, severity FROM sla_due WHERE id = ANY(:ids))"
# the taken rows with their clock, instance and the clock's task (a per-task clock's key is `<name>:<task uuid>`)
_JOINS = ("d JOIN sla_clock c ON c.id = d.clock_id JOIN instance i ON i.id = c.instance_id "
          "LEFT JOIN human_task t ON t.instance_id = c.instance_id AND length(c.key) > length(c.name) "
          "AND t.task_uuid = substr(c.key, length(c.name) + 2) ")
_HOLDER = "(CASE WHEN t.status = 'ready' THEN t.assignee ELSE i.assignee END)"
_REACHABLE = "u.active AND u.email <> ''"
_OUTBOX = "dedupe_key, kind, ref, recipients, template, context, created_at, attempts, next_attempt_at"
_LEVEL = "WHERE i.definition_version_id = :dv AND d.level = :level"


@dataclass(frozen=True)
class Dialect:
    """The few expressions the two databases spell differently."""

    pg: bool
    by_ids: bool = False  # PostgreSQL, a small pass: the claimed ids as an array, not a temporary table

    def doc(self) -> str:
        if self.pg:
            return ("convert_to(json_build_object('sla', json_build_object('clock_id', c.id, 'cycle', d.cycle, "
                    "'level', d.level, 'due_id', d.id))::text, 'UTF8')")
        return ("CAST(json_object('sla', json_object('clock_id', c.id, 'cycle', d.cycle, 'level', d.level, "
                "'due_id', d.id)) AS BLOB)")

    def has_role(self) -> str:
        if self.pg:
            return "u.roles ? :role"
        return "EXISTS (SELECT 1 FROM json_each(u.roles) r WHERE r.value = :role)"

    def mail(self) -> str:
        """The SELECT list of one outbox row for (level `d`, person `u`)."""
        array, obj = ("jsonb_build_array", "jsonb_build_object") if self.pg else ("json_array", "json_object")
        return (f"SELECT 'sla:' || c.id || ':' || d.cycle || ':' || d.level || ':' || u.login, 'escalation', "
                f"'instance:' || i.id, {array}(u.email), 'escalation', {obj}('due', d.id, 'login', u.login), "
                ":now, 0, :now ")

    def taken(self) -> str:
        """FROM the taken rows, joined."""
        return f"FROM {_TAKEN_IDS if self.by_ids else _TAKEN} {_JOINS}"


def recipients_sql(token: str, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The INSERT .. SELECT of the e-mails one notify token sends for one (definition version, level)."""
    head = f"INSERT INTO outbox ({_OUTBOX}) {dialect.mail()} {dialect.taken()}"
    tail = " ON CONFLICT (dedupe_key) DO NOTHING"
    if token == ASSIGNEE:
        return f"{head} JOIN app_user u ON u.login = {_HOLDER} AND {_REACHABLE} {_LEVEL}{tail}", {}
    if token == MANAGER:  # the task's team's manager; with no team, the managers of the holder's teams
        # the team as a scalar subquery: joined, SQLite (no statistics) walked each team's tasks instead
        named = (f"{head} JOIN app_user u ON u.id = (SELECT tm.manager_id FROM team tm WHERE tm.name = t.team) "  # noqa: S608
                 f"AND {_REACHABLE} {_LEVEL} AND t.team IS NOT NULL AND u.login <> coalesce({_HOLDER}, '')")
        theirs = (f"{head} JOIN app_user h ON h.login = {_HOLDER} JOIN team_member m ON m.user_id = h.id "
                  f"JOIN team tm ON tm.id = m.team_id JOIN app_user u ON u.id = tm.manager_id AND {_REACHABLE} "
                  f"{_LEVEL} AND t.team IS NULL AND u.login <> h.login")
        return f"{named}{tail};{theirs}{tail}", {}
    if token.startswith("role:"):
        return (f"{head} JOIN app_user u ON {_REACHABLE} AND {dialect.has_role()} {_LEVEL}{tail}",
                {"role": token.removeprefix("role:")})
    return (f"{head} JOIN app_user u ON u.login = :login AND {_REACHABLE} {_LEVEL}{tail}",
            {"login": token.removeprefix("user:")})


@dataclass
class Fired:
    """What one worker's set-based passes did."""

    levels: int = 0
    mails: int = 0
    passes: int = 0
    statements: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per step, summed over passes


def fire_pass(funnel: Funnel, conn: Connection, *, now: datetime, worker: str, batch: int, out: Fired) -> int:
    """Claim up to `batch` due levels and queue their audit entries and e-mails, set-based; levels taken."""
    pg = conn.dialect.name == "postgresql"
    dialect = Dialect(pg, by_ids=pg and batch < TEMP_TABLE_FROM)
    at: Any = now if dialect.pg else us(now)  # SQLite keeps UTCDateTime as integer microseconds
    params = {"now": at, "lease": now + timedelta(microseconds=LEASE_US) if dialect.pg else us(now) + LEASE_US,
              "worker": worker, "batch": batch}

    def run(step: str, sql: str, extra: dict[str, Any] | None = None) -> int:
        started = time.perf_counter()
        count = 0
        for part in sql.split(";"):
            count += max(conn.execute(sa.text(part), {**params, **(extra or {})}).rowcount, 0)
            out.statements += 1
        out.seconds[step] = out.seconds.get(step, 0.0) + time.perf_counter() - started
        return count

    claim = "UPDATE sla_due SET fired_at = :now, claimed_by = :worker, lease_until = :lease WHERE id IN "
    if dialect.by_ids:
        started = time.perf_counter()
        take = f"{claim}(SELECT id FROM ({_PICK} FOR UPDATE SKIP LOCKED) p) RETURNING id"  # noqa: S608 (fixed)
        params["ids"] = list(conn.execute(sa.text(take), params).scalars())
        out.statements += 1
        out.seconds["claim"] = out.seconds.get("claim", 0.0) + time.perf_counter() - started
        taken = len(params["ids"])
    else:
        run("claim", f"CREATE TEMP TABLE IF NOT EXISTS {_TAKEN} (id BIGINT PRIMARY KEY, clock_id BIGINT, "
                     "cycle INTEGER, level VARCHAR(40), severity INTEGER)")
        run("claim", f"DELETE FROM {_TAKEN}")  # noqa: S608 (fixed text)
        taken = run("claim", f"INSERT INTO {_TAKEN} {_PICK}{' FOR UPDATE SKIP LOCKED' if pg else ''}")
        if taken:
            run("claim", f"{claim}(SELECT id FROM {_TAKEN})")  # noqa: S608 (fixed text)
    if not taken:
        return 0
    run("audit", "INSERT INTO audit_event (instance_id, at, actor, kind, from_stage, to_stage, changes, reason, "
                 "row_version) SELECT i.id, :now, 'system:sla', CASE WHEN d.severity = 0 THEN 'sla_warning' "
                 "WHEN d.severity = 1 THEN 'sla_breach' ELSE 'sla_escalation' END, i.stage, i.stage, "
                 f"{dialect.doc()}, NULL, i.row_version {dialect.taken()}")
    groups = conn.execute(sa.text(f"SELECT DISTINCT i.definition_version_id, d.level {dialect.taken()}"),
                          params).all()
    for dv, level_name in groups:
        policy = funnel.definitions.get(dv).meta.sla
        level = next(lv for lv in policy.levels if lv.name == level_name) if policy else None
        for token in level.notify if level else ():
            sql, extra = recipients_sql(token, dialect)
            out.mails += run("mails", sql, {"dv": dv, "level": level_name, **extra})
    out.levels += taken
    out.passes += 1
    return taken


def fire_all(funnel: Funnel, engine: Engine, *, now: datetime, worker: str, batch: int) -> Fired:
    """Passes of one transaction each until nothing due at `now` is left for this worker."""
    out = Fired()
    while True:
        started = time.perf_counter()
        with engine.begin() as conn:
            taken = fire_pass(funnel, conn, now=now, worker=worker, batch=batch, out=out)
        out.seconds["pass"] = out.seconds.get("pass", 0.0) + time.perf_counter() - started
        if taken < batch:
            return out


def burst(seeder: Seeder, size: int, *, workers: int, batch: int) -> tuple[float, list[Fired], Scheduled]:
    """Schedule `size` levels due at one instant, fire them with `workers` threads; seconds from due to done."""
    due = datetime.now(UTC) + timedelta(seconds=1 + size / 20_000)
    scheduled = seeder.schedule([due] * size)
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    now = datetime.now(UTC)
    results = [Fired() for _ in range(workers)]

    def work(k: int) -> None:
        results[k] = fire_all(seeder.funnel, seeder.engine, now=now, worker=f"set-based-{k}", batch=batch)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, results, scheduled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="What-if: a burst fired with set-based SQL (see the docstring)")
    parser.add_argument("--kind", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="2,000 instances, 20,000 deadlines, a burst of 5,000")
    parser.add_argument("--workers", type=int, help="concurrent workers (default: 1 on SQLite, 2 on PostgreSQL)")
    parser.add_argument("--batch", type=int, default=10_000, help="levels per transaction")
    args = parser.parse_args(argv)
    instances, deadlines, size = (2_000, 20_000, 5_000) if args.quick else (100_000, 1_000_000, 100_000)
    workers = args.workers or (1 if args.kind == "sqlite" else 2)
    with tempfile.TemporaryDirectory() as tmp, database(args.kind, Path(tmp)) as url:
        seeder = seed(url, instances=instances, deadlines=deadlines)
        try:
            seconds, results, scheduled = burst(seeder, size, workers=workers, batch=args.batch)
        finally:
            seeder.close()
    levels, mails = sum(r.levels for r in results), sum(r.mails for r in results)
    steps = {k: round(sum(r.seconds.get(k, 0.0) for r in results), 2) for k in ("claim", "audit", "mails", "pass")}
    print(f"{args.kind}: burst of {size:,} fired set-based by {workers} worker(s), batches of {args.batch:,}: "
          f"{seconds:.2f} s; {levels:,} levels, {mails:,} e-mails (the engine's resolution expects "
          f"{sum(scheduled.expected_mail):,}); {sum(r.passes for r in results)} transactions, "
          f"{sum(r.statements for r in results)} statements; seconds by step (summed over workers): {steps}")


if __name__ == "__main__":
    main()
