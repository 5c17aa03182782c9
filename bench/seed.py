"""Fast, realistic bulk seeding for the timer and size benchmarks: real rows, cloned in SQL.

Creating 100,000 instances through `Funnel.start` takes ~6 ms each (10 minutes), so the seeder
1. starts a few *template* instances of `sales_funnel` through the real engine (demo roster, tiers
   A-D, regions north/south: different targets, assignees and managers), so every row - instance
   with its state, human task, audit entries, SLA clock, its ledger (`sla_clock_event`) and its
   escalation rows (`sla_due`) - is exactly what the engine writes;
2. clones those rows in bulk with INSERT ... SELECT over a numbers table (ids and foreign keys
   rewritten arithmetically; instance and clock ids explicit, the rest from the sequences), one
   transaction per step; per-clock times come from a small integer *plan* table (COPY on
   PostgreSQL, executemany on SQLite) holding epoch microseconds, turned into each backend's
   timestamp format in SQL.

Deadlines. A template clock has one pending row per escalation level (warning, breach, head), so
"deadlines" counts pending `sla_due` rows: 1,000,000 of them over 100,000 instances is ~3.3 clocks
per instance. The first clock of a cloned instance is its stage clock as the engine wrote it (same
key, same task); further clocks are copies named `<name>#<clock id>` on the same task (as parallel
per-task clocks would be; the key `<name>:<task uuid>` is what names the task). Background clocks
(`add_background`) are the template's ledger shifted forward by whole days (0-27), so all of them
are hours to weeks in the future and never fire during a run.

Scheduled deadlines (`schedule`): for each wanted instant D one clock is added whose ledger really
reaches the chosen level at D, so the ticker's re-check (`engine.ticker._fire_due`: derive the
figures from the ledger, `reached(...) <= now`) passes and the level fires instead of being
rescheduled. Levels cycle warning / breach / head (1, 2 and 1 e-mails with the demo roster). The
clock starts at S = calendar.when_remaining(D, threshold) on the clock's business calendar
(`default`, Asia/Shanghai office hours), so `reached(S, threshold) == D` when D lies in office
hours; outside them it is the last closing time before D (the level was reached earlier, the row
is due at D), which the ticker treats the same. Lower levels are recorded as already fired (history
rows), higher ones stay pending at their real (future) instants, `deadline_at` / `warning_at` are
the ledger's. `check_ledger` re-derives a sample exactly as the ticker does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from engine import people
from engine import sla_ledger as ledger
from engine.bootstrap import open_funnel
from engine.calendar import BusinessCalendar
from engine.instances import Funnel
from engine.models import HumanTask, Instance
from engine.models.sla import SlaClock, SlaDue
from engine.settings import Settings
from engine.sla import SlaListener, entries_of
from engine.sla_mail import people_for
from engine.sla_policy import Calendars, Level

WORKFLOW = "sales_funnel"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
SHIFT_DAYS = 28  # background clocks: the template's ledger moved 1..27 days ahead (the first clock: 0)
TIERS = "ABCD"
REGIONS = ("north", "south")
FIRST_STAGE = {"customer_name": "Acme Steel", "contact_name": "Dana", "need": "Cold-rolled coil supply",
               "estimated_amount": 180000.0, "product_line": "coil"}
PLAN_COLUMNS = ("clock_id", "instance_id", "tidx", "suffix", "started", "deadline", "warning", "due0", "due1", "due2",
                "fired_below")


def us(moment: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def instant(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Template:
    """One real instance started through the engine, with the one SLA clock its first stage opened."""

    tidx: int
    instance_id: int
    clock_id: int
    calendar: BusinessCalendar
    target_us: int
    started_us: int
    deadline_us: int
    warning_us: int
    due_us: tuple[int, ...]  # the template's own due instant per level (policy order)
    thresholds: tuple[timedelta, ...]  # consumed business time at which each level is reached
    recipients: tuple[int, ...]  # e-mails each level sends (people the level's `notify` reaches)


@dataclass
class Scheduled:
    """Clocks added by `Seeder.schedule`: per clock the level that falls due (policy index) and when."""

    clock_ids: list[int] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    due_us: list[int] = field(default_factory=list)
    expected_mail: list[int] = field(default_factory=list)
    level_names: tuple[str, ...] = ()
    seconds: float = 0.0  # time the insert took

    def __len__(self) -> int:
        return len(self.clock_ids)

    @property
    def first_clock(self) -> int:
        return min(self.clock_ids)

    @property
    def last_clock(self) -> int:
        return max(self.clock_ids)

    def targets(self) -> dict[tuple[int, str], tuple[int, int]]:
        """(clock id, level name) -> (due instant in epoch microseconds, e-mails expected)."""
        return {(c, self.level_names[lv]): (d, m)
                for c, lv, d, m in zip(self.clock_ids, self.levels, self.due_us, self.expected_mail, strict=True)}


@dataclass
class SeedReport:
    instances: int = 0
    clocks: int = 0
    pending: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


class Seeder:
    """Seeds one database: templates through the engine, then bulk clones (see the module docstring)."""

    def __init__(self, url: str, *, templates: int = 8) -> None:
        self.url = url
        self.funnel: Funnel = open_funnel(Settings(database_url=url))
        self.engine: Engine = self.funnel.engine
        self.kind = self.engine.dialect.name
        listener = next(x for x in self.funnel.listeners if isinstance(x, SlaListener))
        self.calendars: Calendars = listener.calendars
        definition = self.funnel.definitions.latest(WORKFLOW)
        policy = definition.meta.sla
        assert policy is not None and len(policy.levels) == 3, "the bench expects warning / breach / head levels"
        self.levels: tuple[Level, ...] = tuple(policy.levels)
        self.report = SeedReport()
        started = time.perf_counter()
        self.templates = self._start_templates(templates)
        self.report.seconds["templates"] = time.perf_counter() - started
        self.clones: tuple[int, int] = (0, 0)  # [first id, last id] of the cloned instances
        self._scheduled_clocks = 0

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ templates through the engine

    def _start_templates(self, count: int) -> list[Template]:
        now = self.funnel.clock()
        people.seed_roster(self.engine, now=now)
        for k in range(count):
            tier, region = TIERS[k % len(TIERS)], REGIONS[(k // len(TIERS)) % len(REGIONS)]
            self.funnel.start(WORKFLOW, {**FIRST_STAGE, "region": region}, actor="bench", customer_tier=tier)
        out = []
        with Session(self.engine) as session:
            rows = list(session.exec(select(Instance).order_by(col(Instance.id))))
            for tidx, row in enumerate(rows):
                [clock] = list(session.exec(select(SlaClock).where(SlaClock.instance_id == row.id)))
                [task] = list(session.exec(select(HumanTask).where(HumanTask.instance_id == row.id)))
                dues = {d.level: d.due_at for d in session.exec(select(SlaDue).where(SlaDue.clock_id == clock.id))}
                entries = entries_of(session, [clock.id or 0])[clock.id or 0]
                assert [e.kind for e in entries] == [ledger.START], "a template clock has exactly its start event"
                assert clock.target_seconds and clock.deadline_at and clock.warning_at
                target = timedelta(seconds=clock.target_seconds)
                reach = [people_for(session, lv.notify, instance=row, task=task)[0] for lv in self.levels]
                recipients = tuple(len(found) for found in reach)
                assert all(recipients), f"template {row.id}: a level reaches nobody ({recipients})"
                out.append(Template(
                    tidx=tidx, instance_id=row.id or 0, clock_id=clock.id or 0,
                    calendar=self.calendars.get(clock.calendar), target_us=round(clock.target_seconds * 1_000_000),
                    started_us=us(clock.started_at), deadline_us=us(clock.deadline_at), warning_us=us(clock.warning_at),
                    due_us=tuple(us(dues[lv.name]) for lv in self.levels),
                    thresholds=tuple(lv.threshold(target, clock.warning_ratio) for lv in self.levels),
                    recipients=recipients))
        self.report.instances, self.report.clocks, self.report.pending = len(out), len(out), 3 * len(out)
        return out

    # ------------------------------------------------------------ bulk clones

    def clone_instances(self, total: int) -> None:
        """Clone the templates (instance, its human task, its audit entries) until `total` instances exist."""
        count = max(0, total - len(self.templates))
        started = time.perf_counter()
        with self.engine.begin() as conn:
            self._template_table(conn)
            self._numbers(conn, count)
            first = (conn.execute(sa.text("SELECT max(id) FROM instance")).scalar() or 0) + 1
            inst_cols = [c.name for c in Instance.__table__.columns if c.name != "id"]  # type: ignore[attr-defined]
            conn.execute(sa.text(
                f"INSERT INTO instance (id, {', '.join(inst_cols)}) "  # noqa: S608
                f"SELECT :first + n.i, {', '.join('s.' + c for c in inst_cols)} FROM bench_n n "
                f"JOIN bench_tmpl t ON t.tidx = n.i % :tcount JOIN instance s ON s.id = t.instance_id "
                f"WHERE n.i < :count"), {"first": first, "tcount": len(self.templates), "count": count})
            for table in ("human_task", "audit_event"):
                cols = [c for c in self._columns(conn, table) if c not in ("id", "instance_id")]
                conn.execute(sa.text(
                    f"INSERT INTO {table} (instance_id, {', '.join(cols)}) "  # noqa: S608
                    f"SELECT :first + n.i, {', '.join('s.' + c for c in cols)} FROM bench_n n "
                    f"JOIN bench_tmpl t ON t.tidx = n.i % :tcount JOIN {table} s ON s.instance_id = t.instance_id "
                    f"WHERE n.i < :count ORDER BY n.i, s.id"),
                    {"first": first, "tcount": len(self.templates), "count": count})
            self._fix_sequence(conn, "instance")
        self.clones = (first, first + count - 1)
        self.report.instances += count
        self.report.seconds["instances"] = time.perf_counter() - started

    def add_background(self, deadlines: int) -> None:
        """Far-future clocks until about `deadlines` pending escalation rows exist (3 per clock)."""
        clones = self._clone_count()
        assert clones > 0, "clone instances first"
        wanted = max(0, deadlines - self.report.pending)
        count = -(-wanted // len(self.levels))
        started = time.perf_counter()
        with self.engine.begin() as conn:
            first_clock = self._next_clock_id(conn)
            plan = []
            templates = self.templates
            first_instance = self.clones[0]
            for j in range(count):
                c = j % clones
                t = templates[c % len(templates)]
                shift = 0 if j < clones else (1 + j % (SHIFT_DAYS - 1)) * DAY_US
                plan.append((first_clock + j, first_instance + c, t.tidx, 0 if j < clones else 1,
                             t.started_us + shift, t.deadline_us + shift, t.warning_us + shift,
                             t.due_us[0] + shift, t.due_us[1] + shift, t.due_us[2] + shift, 0))
            self._insert_plan(conn, plan)
        self.report.clocks += count
        self.report.pending += count * len(self.levels)
        self.report.seconds["deadlines"] = time.perf_counter() - started

    def schedule(self, dues: Sequence[datetime]) -> Scheduled:
        """One clock per instant in `dues`, whose next level (cycling warning, breach, head) falls due then."""
        clones = self._clone_count()
        tcount = len(self.templates)
        per_template = clones // tcount
        assert per_template > 0, "clone at least one instance per template first"
        out = Scheduled(level_names=tuple(lv.name for lv in self.levels))
        memo: dict[tuple[int, int, int], tuple[int, ...]] = {}
        started = time.perf_counter()
        with self.engine.begin() as conn:
            first_clock = self._next_clock_id(conn)
            plan = []
            for k, due in enumerate(dues):
                seq = self._scheduled_clocks + k
                t = self.templates[seq % tcount]
                level = seq % len(self.levels)
                clone = ((seq // tcount) % per_template) * tcount + t.tidx
                d = us(due)
                key = (t.tidx, level, d)
                times = memo.get(key)
                if times is None:
                    times = memo[key] = self._ledger_times(t, level, due)
                plan.append((first_clock + k, self.clones[0] + clone, t.tidx, 1, *times, level))
                out.clock_ids.append(first_clock + k)
                out.levels.append(level)
                out.due_us.append(d)
                out.expected_mail.append(t.recipients[level])
            self._insert_plan(conn, plan)
        self._scheduled_clocks += len(dues)
        self.report.clocks += len(dues)
        self.report.pending += sum(len(self.levels) - lv for lv in out.levels)
        out.seconds = time.perf_counter() - started
        return out

    def _ledger_times(self, t: Template, level: int, due: datetime) -> tuple[int, ...]:
        """started, deadline, warning and the three level instants of a clock whose `level` is reached at `due`."""
        calendar = t.calendar
        start = calendar.when_remaining(due, t.thresholds[level])
        target = timedelta(microseconds=t.target_us)
        reached = [calendar.add(start, thr) for thr in t.thresholds]
        assert reached[level] <= due, (reached[level], due)
        reached[level] = due  # due at the planned instant (the same one when it lies in office hours)
        warning = calendar.add(start, t.thresholds[0])
        return (us(start), us(calendar.add(start, target)), us(warning), *(us(r) for r in reached))

    # ------------------------------------------------------------ SQL plumbing

    def _insert_plan(self, conn: Connection, plan: Sequence[tuple[int, ...]]) -> None:
        """Clocks, their start events and their escalation rows for each plan row, in three INSERT ... SELECT."""
        if not plan:
            return
        self._template_table(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_plan"))
        conn.execute(sa.text("CREATE TEMP TABLE bench_plan (clock_id BIGINT PRIMARY KEY, instance_id BIGINT, "
                             "tidx INTEGER, suffix INTEGER, started BIGINT, deadline BIGINT, warning BIGINT, "
                             "due0 BIGINT, due1 BIGINT, due2 BIGINT, fired_below INTEGER)"))
        raw = conn.connection.driver_connection
        assert raw is not None
        if self.kind == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY bench_plan ({', '.join(PLAN_COLUMNS)}) FROM STDIN") as copy:
                for row in plan:
                    copy.write_row(row)
        else:
            raw.executemany(f"INSERT INTO bench_plan VALUES ({', '.join('?' * len(PLAN_COLUMNS))})", plan)  # noqa: S608
        ts = self._ts
        # a copy's name carries the suffix, so its key (`<name>:<task>`) still names the template's task
        name = "CASE WHEN p.suffix = 1 THEN c.name || '#' || CAST(p.clock_id AS VARCHAR(20)) ELSE c.name END"
        key = f"CASE WHEN c.key = c.name THEN {name} ELSE {name} || SUBSTR(c.key, LENGTH(c.name) + 1) END"
        conn.execute(sa.text(
            "INSERT INTO sla_clock (id, instance_id, key, name, title, stage, calendar, "  # noqa: S608
            "warning_ratio, cycle, status, target_seconds, started_at, stopped_at, deadline_at, warning_at, "
            "updated_at) "
            f"SELECT p.clock_id, p.instance_id, {key}, {name}, c.title, "
            "c.stage, c.calendar, c.warning_ratio, c.cycle, c.status, c.target_seconds, "
            f"{ts('p.started')}, NULL, {ts('p.deadline')}, {ts('p.warning')}, {ts('p.started')} "
            "FROM bench_plan p JOIN bench_tmpl t ON t.tidx = p.tidx JOIN sla_clock c ON c.id = t.clock_id "
            "ORDER BY p.clock_id"))
        conn.execute(sa.text(
            "INSERT INTO sla_clock_event (clock_id, at, kind, cycle, target_seconds, actor, "  # noqa: S608
            "reason, detail) "
            f"SELECT p.clock_id, {ts('p.started')}, e.kind, e.cycle, e.target_seconds, e.actor, "
            "e.reason, e.detail FROM bench_plan p JOIN bench_tmpl t ON t.tidx = p.tidx "
            "JOIN sla_clock_event e ON e.clock_id = t.clock_id ORDER BY p.clock_id, e.id"))
        names = [lv.name for lv in self.levels]
        rank = "CASE d.level " + " ".join(f"WHEN '{n}' THEN {i}" for i, n in enumerate(names)) + " END"
        when = "CASE d.level " + " ".join(f"WHEN '{n}' THEN p.due{i}" for i, n in enumerate(names)) + " END"
        conn.execute(sa.text(
            "INSERT INTO sla_due (clock_id, cycle, level, severity, due_at, fired_at) "  # noqa: S608
            f"SELECT p.clock_id, d.cycle, d.level, d.severity, {ts(when)}, "
            f"CASE WHEN {rank} < p.fired_below THEN {ts(when)} END "
            "FROM bench_plan p JOIN bench_tmpl t ON t.tidx = p.tidx JOIN sla_due d ON d.clock_id = t.clock_id "
            "ORDER BY p.clock_id, d.id"))
        conn.execute(sa.text("DROP TABLE bench_plan"))
        self._fix_sequence(conn, "sla_clock")

    def _ts(self, micros: str) -> str:
        return ts_sql(self.kind, micros)

    def _template_table(self, conn: Connection) -> None:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_tmpl"))
        conn.execute(sa.text("CREATE TEMP TABLE bench_tmpl (tidx INTEGER PRIMARY KEY, instance_id BIGINT, "
                             "clock_id BIGINT)"))
        conn.execute(sa.text("INSERT INTO bench_tmpl VALUES (:tidx, :instance_id, :clock_id)"),
                     [{"tidx": t.tidx, "instance_id": t.instance_id, "clock_id": t.clock_id} for t in self.templates])

    def _numbers(self, conn: Connection, count: int) -> None:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_n"))
        conn.execute(sa.text("CREATE TEMP TABLE bench_n (i BIGINT PRIMARY KEY)"))
        if self.kind == "postgresql":
            conn.execute(sa.text("INSERT INTO bench_n SELECT generate_series(CAST(0 AS BIGINT), :n - 1)"), {"n": count})
        else:
            conn.execute(sa.text("WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < :n) "
                                 "INSERT INTO bench_n SELECT i FROM c"), {"n": count})

    def _columns(self, conn: Connection, table: str) -> list[str]:
        return [c["name"] for c in sa.inspect(conn).get_columns(table)]

    def _fix_sequence(self, conn: Connection, table: str) -> None:
        if self.kind == "postgresql":
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                                 f"(SELECT max(id) FROM {table}))"))

    def _next_clock_id(self, conn: Connection) -> int:
        return int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM sla_clock")).scalar() or 0) + 1

    def _clone_count(self) -> int:
        first, last = self.clones
        return last - first + 1 if last >= first else 0

    def analyze(self) -> None:
        """PostgreSQL: refresh planner statistics (what autovacuum does on a live database); SQLite: checkpoint."""
        started = time.perf_counter()
        if self.kind == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))
        else:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.report.seconds["analyze"] = time.perf_counter() - started

    # ------------------------------------------------------------ checks

    def check_ledger(self, scheduled: Scheduled, sample: int = 50) -> None:
        """Re-derive a sample of scheduled clocks the way the ticker does: each level is reached by its due time."""
        step = max(1, len(scheduled) // sample)
        with Session(self.engine) as session:
            for k in range(0, len(scheduled), step):
                clock = session.get(SlaClock, scheduled.clock_ids[k])
                assert clock is not None and clock.id is not None
                level = self.levels[scheduled.levels[k]]
                due = instant(scheduled.due_us[k])
                entries = entries_of(session, [clock.id])[clock.id]
                calendar = self.calendars.get(clock.calendar)
                figures = ledger.derive(calendar, entries, now=due, warning=clock.warning_ratio, cycle=1)
                assert figures.target is not None and figures.status == ledger.RUNNING
                when = ledger.reached(calendar, ledger.spans(entries, 1),
                                      level.threshold(figures.target, clock.warning_ratio))
                assert when is not None and when <= due, f"clock {clock.id}: {level.name} reached {when}, due {due}"
                row = session.exec(select(SlaDue).where(SlaDue.clock_id == clock.id, SlaDue.level == level.name)).one()
                assert row.fired_at is None and row.due_at == due, (row.due_at, due)


def ts_sql(kind: str, micros: str) -> str:
    """SQL turning epoch microseconds into the backend's timestamp (SQLite stores them as they are:
    notifications.models.UTCDateTime)."""
    if kind == "postgresql":
        return f"(to_timestamp(({micros}) / 1000000) + (({micros}) % 1000000) * interval '1 microsecond')"
    return f"({micros})"


def seed(url: str, *, instances: int, deadlines: int, templates: int = 8) -> Seeder:
    """A database with `instances` open sales opportunities and about `deadlines` pending escalation rows."""
    seeder = Seeder(url, templates=templates)
    seeder.clone_instances(instances)
    seeder.add_background(deadlines)
    seeder.analyze()
    return seeder


def counts(engine: Engine) -> dict[str, int]:
    """Rows per seeded table and pending escalation rows."""
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for table in ("instance", "human_task", "audit_event", "sla_clock", "sla_clock_event", "sla_due", "outbox"):
            out[table] = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)  # noqa: S608
        out["pending"] = int(conn.execute(sa.text("SELECT count(*) FROM sla_due WHERE fired_at IS NULL")).scalar() or 0)
    return out


def describe(seeder: Seeder) -> dict[str, Any]:
    r = seeder.report
    return {"instances": r.instances, "clocks": r.clocks, "pending_deadlines": r.pending,
            "seed_seconds": {k: round(v, 2) for k, v in r.seconds.items()}, "seed_total_s": round(r.total_seconds, 1)}
