"""The statements every instance change runs, built once: the hot path's share of the persistence layer.

Every advance reads the instance, writes it back under its row version, mirrors its user tasks and
appends an audit entry. Building a SQLAlchemy statement costs several times more than executing it
(construction, cache key, ORM unit of work), so these are module-level Core statements with bind
parameters against the same SQLModel tables, executed on the session's connection (same transaction).
Objects handed to listeners stay SQLModel objects: loaded rows become *persistent* through
`make_transient_to_detached` + `Session.add`, so a listener may still change and flush them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import configure_mappers, instrumentation, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from engine.models import AuditEvent, HumanTask, Instance

M = TypeVar("M")

INSTANCE: sa.Table = Instance.__table__  # type: ignore[attr-defined]
TASK: sa.Table = HumanTask.__table__  # type: ignore[attr-defined]
AUDIT: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]

# What a change may set on an instance row (the row version and update time are always set).
CHANGED_COLUMNS = ("state", "data", "stage", "stage_order", "status", "probability", "amount", "waiting_since")

_SELECT_INSTANCE = sa.select(INSTANCE).where(INSTANCE.c.id == sa.bindparam("b_id"))
# The instance with who holds its open tasks (once per open task, or once): what every permission check needs
_SELECT_INSTANCE_OPEN = (
    sa.select(INSTANCE, TASK.c.task_uuid.label("o_task"), TASK.c.assignee.label("o_assignee"),
              TASK.c.team.label("o_team"))
    .select_from(INSTANCE.outerjoin(TASK, sa.and_(TASK.c.instance_id == INSTANCE.c.id, TASK.c.status == "ready")))
    .where(INSTANCE.c.id == sa.bindparam("b_id")).order_by(TASK.c.id))
_UPDATE_INSTANCE = (
    sa.update(INSTANCE)
    .where(INSTANCE.c.id == sa.bindparam("b_id"), INSTANCE.c.row_version == sa.bindparam("b_expected"))
    .values({name: sa.bindparam(f"b_{name}") for name in (*CHANGED_COLUMNS, "row_version", "updated_at")})
)
_OPEN_TASKS = (sa.select(TASK).where(TASK.c.instance_id == sa.bindparam("b_instance"), TASK.c.status == "ready")
               .order_by(TASK.c.id))
_CLOSE_TASK = (sa.update(TASK).where(TASK.c.id == sa.bindparam("b_id"))
               .values(status=sa.bindparam("b_status"), completed_at=sa.bindparam("b_at"),
                       completed_by=sa.bindparam("b_by")))
_INSERT_TASK = sa.insert(TASK).returning(TASK.c.id)
_INSERT_AUDIT = sa.insert(AUDIT)


def row_object(cls: type[M], values: Mapping[Any, Any]) -> M:
    """A table-model object from values we trust (a row just read, or built by the engine), unvalidated.

    SQLModel's constructor validates every field (~60 us for an instance row); the values here come
    from the database or from engine code, so pydantic's `model_construct` plus SQLAlchemy's instance
    state (~7 us) gives the same object. Never use it for outside input: that goes through validation.
    """
    configure_mappers()  # a fresh process may build objects before its first query configured them (~2 us)
    obj = cls.model_construct(**values)  # type: ignore[attr-defined]
    instrumentation.manager_of_class(cls)._new_state_if_none(obj)
    return obj


def load_instance(session: Session, instance_id: int) -> Instance | None:
    """The instance row as a detached object (not tracked: changes are written by `update_instance`)."""
    found = session.connection().execute(_SELECT_INSTANCE, {"b_id": instance_id}).first()
    return None if found is None else row_object(Instance, found._mapping)


OpenTask = tuple[str, str | None, str | None]  # an open task's id, assignee and team


def load_instance_open(session: Session, instance_id: int) -> tuple[Instance | None, tuple[OpenTask, ...]]:
    """The instance row (as load_instance) and who holds its open tasks, in one statement."""
    rows = session.connection().execute(_SELECT_INSTANCE_OPEN, {"b_id": instance_id}).all()
    if not rows:
        return None, ()
    row = row_object(Instance, {c.name: rows[0]._mapping[c] for c in INSTANCE.c})
    return row, tuple((r.o_task, r.o_assignee, r.o_team) for r in rows if r.o_task is not None)


def update_instance(session: Session, row: Instance, *, expected: int, now: datetime) -> bool:
    """Write the changed columns if the row is still at `expected`; False when another writer won."""
    values = {f"b_{name}": getattr(row, name) for name in CHANGED_COLUMNS}
    result = session.connection().execute(_UPDATE_INSTANCE, {
        **values, "b_id": row.id, "b_expected": expected, "b_row_version": expected + 1, "b_updated_at": now})
    return result.rowcount == 1


def open_tasks(session: Session, instance_id: int) -> list[HumanTask]:
    """The instance's ready tasks, persistent in `session` (a listener may change and flush them)."""
    rows = session.connection().execute(_OPEN_TASKS, {"b_instance": instance_id})
    return [_attach(session, row_object(HumanTask, r._mapping)) for r in rows]


def close_tasks(session: Session, tasks: list[HumanTask], *, now: datetime, completed: str | None,
                actor: str) -> None:
    """Mark tasks completed (the one the change completed) or cancelled, in one executemany."""
    if not tasks:
        return
    params = []
    for task in tasks:
        status = "completed" if task.task_uuid == completed else "cancelled"
        by = actor if status == "completed" else None
        params.append({"b_id": task.id, "b_status": status, "b_at": now, "b_by": by})
        _committed(task, status=status, completed_at=now, completed_by=by)
    session.connection().execute(_CLOSE_TASK, params)


def insert_tasks(session: Session, tasks: list[HumanTask]) -> None:
    """Insert new task rows, set their ids and make them persistent in `session`."""
    conn = session.connection()
    for task in tasks:
        task.id = conn.execute(_INSERT_TASK, task.model_dump(exclude={"id"})).scalar_one()
        _attach(session, task)


def insert_audit(session: Session, values: Mapping[str, Any]) -> None:
    """Append one audit entry (the log is append-only: no object to track)."""
    session.connection().execute(_INSERT_AUDIT, dict(values))


def _attach(session: Session, obj: Any) -> Any:
    """Make a row object read by Core persistent in the session, as if the ORM had loaded it."""
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def _committed(obj: Any, **values: Any) -> None:
    """Set attributes as already stored (the statement wrote them), so no flush writes them again."""
    for key, value in values.items():
        set_committed_value(obj, key, value)
