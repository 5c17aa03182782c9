"""Customers: tier, group hierarchy, region and contacts; a tier change re-tiers open work in one transaction.

Every write validates everything first (a refusal writes nothing), then runs in one transaction that
begins with an UPDATE guarded by `row_version` (the pattern of engine/instances.py), so two editors
never both win. The customer history is append-only; an instance's tier is always its customer's.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.db import read_session
from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import AuditEvent, Instance
from engine.models.customers import TIERS, Customer, CustomerContact, CustomerHistory

if TYPE_CHECKING:
    from engine.instances import Funnel

TIER_MEANINGS = {"A": "strategic", "B": "key", "C": "general", "D": "abandon or potential"}
UPDATABLE = ("name", "tier", "region", "parent_id")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]*")


@dataclass(frozen=True)
class ContactView:
    """A contact person as the API shows it."""

    id: int
    customer_id: int
    name: str
    email: str
    phone: str | None
    time_zone: str
    role: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: CustomerContact) -> ContactView:
        assert row.id is not None
        return cls(row.id, row.customer_id, row.name, row.email, row.phone, row.time_zone, row.role,
                   row.created_at)


@dataclass(frozen=True)
class CustomerView:
    """A customer with its contacts and direct subsidiaries: plain data, no ORM objects."""

    id: int
    name: str
    tier: str
    parent_id: int | None
    region: str | None
    row_version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    contacts: list[ContactView] = field(default_factory=list)
    subsidiaries: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- reads


def get(funnel: Funnel, customer_id: int) -> CustomerView:
    with read_session(funnel.engine) as session:
        return _view(session, _row(session, customer_id))


def find(funnel: Funnel, *, tier: str | None = None, region: str | None = None,
         parent_id: int | None = None) -> list[CustomerView]:
    """Customers by tier, region (case-insensitive) and/or direct parent, ordered by name."""
    stmt = select(Customer)
    if tier is not None:
        stmt = stmt.where(Customer.tier == _tier(tier))
    if region is not None:
        stmt = stmt.where(sa.func.lower(col(Customer.region)) == _text(region, "region", 100).lower())
    if parent_id is not None:
        stmt = stmt.where(Customer.parent_id == _id(parent_id, "parent_id"))
    with read_session(funnel.engine) as session:
        return [_view(session, row) for row in session.exec(stmt.order_by(col(Customer.name), col(Customer.id)))]


def history(funnel: Funnel, customer_id: int) -> list[CustomerHistory]:
    """Who created and changed the customer (tier changes with their reasons), oldest first."""
    with read_session(funnel.engine) as session:
        _row(session, customer_id)
        stmt = select(CustomerHistory).where(CustomerHistory.customer_id == customer_id)
        return list(session.exec(stmt.order_by(col(CustomerHistory.id))))


# ---------------------------------------------------------------- writes


def create(funnel: Funnel, *, name: str, tier: str, actor: str, region: str | None = None,
           parent_id: int | None = None, contacts: Sequence[Mapping[str, Any]] = ()) -> CustomerView:
    """Create a customer (and its first contacts) or refuse, writing nothing, saying what to fix."""
    values: dict[str, Any] = {"name": _text(name, "name", 200), "tier": _tier(tier), "region": _region(region),
              "parent_id": None if parent_id is None else _id(parent_id, "parent_id")}
    people = [_contact(c, f"contacts[{i}]") for i, c in enumerate(_contacts(contacts))]
    actor = _text(actor, "actor", 200)
    now = funnel.clock()
    with Session(funnel.engine) as session:
        if values["parent_id"] is not None:
            _row(session, values["parent_id"], what="parent customer")  # a new customer cannot close a cycle
        row = Customer(**values, created_by=actor, created_at=now, updated_at=now)
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add(CustomerHistory(customer_id=row.id, at=now, actor=actor, kind="created",
                                    changes={k: {"from": None, "to": v} for k, v in values.items()}))
        for person in people:
            session.add(CustomerContact(customer_id=row.id, created_at=now, **person))
        session.commit()
        return _view(session, row)


def add_contact(funnel: Funnel, customer_id: int, *, name: str, email: str, time_zone: str, actor: str,
                phone: str | None = None, role: str | None = None) -> ContactView:
    """Add a contact person; the e-mail and IANA time zone are checked so escalations reach them on time."""
    person = _contact({"name": name, "email": email, "time_zone": time_zone, "phone": phone, "role": role},
                      "contact")
    actor = _text(actor, "actor", 200)
    now = funnel.clock()
    with Session(funnel.engine) as session:
        _row(session, customer_id)
        row = CustomerContact(customer_id=customer_id, created_at=now, **person)
        session.add(row)
        session.flush()
        session.add(CustomerHistory(customer_id=customer_id, at=now, actor=actor, kind="contact_added",
                                    changes={"contact": {"from": None, "to": {"id": row.id, **person}}}))
        session.commit()
        return ContactView.of(row)


def update(funnel: Funnel, customer_id: int, changes: Mapping[str, Any], *, actor: str,
           reason: str | None = None, expected_version: int | None = None) -> CustomerView:
    """Change name, tier, region or parent; a tier change (reason required) re-tiers open instances too."""
    wanted = _changes(changes)
    actor = _text(actor, "actor", 200)
    with Session(funnel.engine) as session:
        current = _row(session, customer_id)
        session.expunge(current)
    version = current.row_version if expected_version is None else _id(expected_version, "expected_version")
    diff = {k: {"from": getattr(current, k), "to": v} for k, v in wanted.items() if getattr(current, k) != v}
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("reason must be text", "reason")
    why = (reason or "").strip()
    if "tier" in diff and not why:
        raise InvalidInput(f"changing the tier from {current.tier} to {wanted['tier']} needs a reason "
                           "(it is recorded and re-derives the SLA deadlines of open work)", "reason")
    if not diff and version == current.row_version:
        return get(funnel, customer_id)  # nothing changes: nothing to record
    now = funnel.clock()
    try:
        with Session(funnel.engine) as session:
            _lock(session, customer_id, version, now)
            if "parent_id" in diff:
                _check_parent(session, customer_id, diff["parent_id"]["to"])
            session.execute(sa.update(Customer).where(col(Customer.id) == customer_id)
                            .values(**{k: d["to"] for k, d in diff.items()}))
            kind = "tier_changed" if "tier" in diff else "updated"
            session.add(CustomerHistory(customer_id=customer_id, at=now, actor=actor, kind=kind, changes=diff,
                                        reason=why or None))
            if "tier" in diff:
                _retier_open_instances(funnel, session, customer_id, diff["tier"], actor=actor, reason=why,
                                       now=now)
            session.commit()
            return _view(session, _row(session, customer_id))
    except sa.exc.OperationalError as err:  # a deadlock between two hierarchy changes: one must retry
        raise Conflict(f"customer {customer_id} was changed concurrently; reload it and retry") from err


def _lock(session: Session, customer_id: int, version: int, now: datetime) -> None:
    """Begin the write with the version-guarded UPDATE: it takes the row (SQLite: the database) lock first."""
    result = session.execute(
        sa.update(Customer)
        .where(col(Customer.id) == customer_id, col(Customer.row_version) == version)
        .values(row_version=version + 1, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        now_at = session.get(Customer, customer_id)
        raise Conflict(f"customer {customer_id} is at version {now_at.row_version if now_at else None}, "
                       f"not {version}: reload it and retry",
                       current_version=now_at.row_version if now_at else None)


def _retier_open_instances(funnel: Funnel, session: Session, customer_id: int, tier: dict[str, Any], *,
                           actor: str, reason: str, now: datetime) -> None:
    """Set the new tier on every running instance of the customer, audit it and tell the listeners."""
    from engine.instances import RUNNING, ChangeEvent  # engine.instances imports this module

    stmt = (select(Instance).where(Instance.customer_id == customer_id, Instance.status == RUNNING)
            .order_by(col(Instance.id)).with_for_update())
    for row in list(session.exec(stmt)):
        assert row.id is not None
        session.expunge(row)
        version = row.row_version + 1
        session.execute(sa.update(Instance).where(col(Instance.id) == row.id)
                        .values(customer_tier=tier["to"], row_version=version, updated_at=now))
        row.customer_tier, row.row_version, row.updated_at = tier["to"], version, now
        session.add(AuditEvent(instance_id=row.id, at=now, actor=actor, kind="tier_changed",
                               from_stage=row.stage, to_stage=row.stage, changes={"customer_tier": tier},
                               reason=reason, row_version=version))
        definition = funnel.definitions.get(row.definition_version_id)
        event = ChangeEvent(funnel, session, row, definition, "tier_changed", actor, now, row.stage,
                            dict(row.data))
        for listener in funnel.listeners:
            listener.after_change(event)


def _check_parent(session: Session, customer_id: int, parent_id: int | None) -> None:
    """Refuse an unknown parent and any cycle; ancestors are locked so two moves cannot cross."""
    chain = [customer_id]
    current = parent_id
    while current is not None:
        chain.append(current)
        if current == customer_id:
            path = " -> ".join(str(c) for c in chain)
            raise InvalidInput(f"customer {customer_id} cannot belong to customer {parent_id}: that would make a "
                               f"cycle ({path}); choose a parent that is not one of its subsidiaries", "parent_id")
        row = session.get(Customer, current, with_for_update={"read": True})
        if row is None:
            raise NotFound(f"parent customer {current} does not exist: choose an existing customer as parent_id")
        current = row.parent_id


# ---------------------------------------------------------------- the instance side


def for_instance(session: Session, data: dict[str, Any], *, customer_id: int | None,
                 customer_tier: str | None) -> tuple[dict[str, Any], str | None]:
    """An instance's data and tier given its customer: the customer's tier wins, a contradiction is refused."""
    if customer_id is None:
        return data, customer_tier
    try:  # shared lock: a concurrent tier change waits for this start, or this start for it
        customer = session.get(Customer, _id(customer_id, "customer_id"), with_for_update={"read": True})
    except sa.exc.OperationalError as err:  # PostgreSQL broke a deadlock with that tier change
        raise Conflict(f"customer {customer_id} is being changed right now; retry") from err
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist: create it first or choose an existing customer")
    if customer_tier is not None and customer_tier != customer.tier:
        raise InvalidInput(f"customer_tier {customer_tier!r} contradicts the tier of customer {customer_id} "
                           f"({customer.tier!r}): leave customer_tier out, the customer's tier applies",
                           "customer_tier")
    if data.get("customer_id", customer_id) != customer_id:
        raise InvalidInput(f"data.customer_id {data['customer_id']!r} differs from customer_id {customer_id}",
                           "customer_id")
    return {**data, "customer_id": customer_id}, customer.tier


# ---------------------------------------------------------------- validation


def _changes(changes: Any) -> dict[str, Any]:
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInput(f"changes must be an object with at least one of {', '.join(UPDATABLE)}", "changes")
    unknown = [str(k) for k in changes if k not in UPDATABLE]
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(unknown)}; changeable: {', '.join(UPDATABLE)}", unknown[0])
    checks = {"name": lambda v: _text(v, "name", 200), "tier": _tier, "region": _region,
              "parent_id": lambda v: None if v is None else _id(v, "parent_id")}
    return {k: checks[k](v) for k, v in changes.items()}


def _contacts(contacts: Any) -> list[Mapping[str, Any]]:
    if isinstance(contacts, str | bytes | Mapping) or not isinstance(contacts, Sequence):
        raise InvalidInput("contacts must be a list of contact objects", "contacts")
    return list(contacts)


def _contact(given: Any, where: str) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise InvalidInput(f"{where} must be an object with name, email, time_zone (and phone, role)", where)
    unknown = sorted(set(given) - {"name", "email", "time_zone", "phone", "role"})
    if unknown:
        raise InvalidInput(f"{where} has unknown field(s) {', '.join(map(str, unknown))}", where)
    phone, role = given.get("phone"), given.get("role")
    return {"name": _text(given.get("name"), "name", 200), "email": _email(given.get("email")),
            "time_zone": _time_zone(given.get("time_zone")), "phone": None if phone is None else _phone(phone),
            "role": None if role is None else _text(role, "role", 100)}


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must not be empty", name)
    if len(value.strip()) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", name)
    return value.strip()


def _region(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, "region", 100)


def _tier(value: Any) -> str:
    if not isinstance(value, str) or value not in TIERS:
        options = ", ".join(f"{t} ({m})" for t, m in TIER_MEANINGS.items())
        raise InvalidInput(f"tier must be one of {options}, not {value!r}", "tier")
    return value


def _id(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(f"{name} must be a whole number from 1, not {value!r}", name)
    return value


def _email(value: Any) -> str:
    text = _text(value, "email", 254)
    if not _EMAIL.fullmatch(text) or ".." in text:
        raise InvalidInput(f"email {text!r} is not an e-mail address like name@example.com", "email")
    return text


def _phone(value: Any) -> str:
    text = _text(value, "phone", 40)
    digits = sum(c.isdigit() for c in text)
    if not _PHONE.fullmatch(text) or not 6 <= digits <= 15:
        raise InvalidInput(f"phone {text!r} must be 6 to 15 digits with an optional leading + and spaces, "
                           "dashes or brackets (e.g. +86 21 5555 0100)", "phone")
    return text


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: Any) -> str:
    text = _text(value, "time_zone", 64)
    try:
        zoneinfo.ZoneInfo(text)
        known = text in _zones() and text not in ("localtime", "posixrules", "Factory")  # host files, not zones
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        known = False
    if not known:
        close = [z for z in _zones() if z.lower() == text.lower()]
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidInput(f"time zone {text!r} is unknown: {hint}use an IANA name like Europe/Berlin or "
                           "Asia/Shanghai", "time_zone")
    return text


# ---------------------------------------------------------------- helpers


def _row(session: Session, customer_id: Any, *, what: str = "customer") -> Customer:
    row = session.get(Customer, _id(customer_id, "customer_id" if what == "customer" else "parent_id"))
    if row is None:
        hint = ": choose an existing customer as parent_id" if what != "customer" else ""
        raise NotFound(f"{what} {customer_id} does not exist{hint}")
    return row


def _view(session: Session, row: Customer) -> CustomerView:
    assert row.id is not None
    contacts = session.exec(select(CustomerContact).where(CustomerContact.customer_id == row.id)
                            .order_by(col(CustomerContact.id)))
    children = session.exec(select(Customer.id).where(Customer.parent_id == row.id).order_by(col(Customer.id)))
    return CustomerView(row.id, row.name, row.tier, row.parent_id, row.region, row.row_version, row.created_by,
                        row.created_at, row.updated_at, [ContactView.of(c) for c in contacts],
                        [c for c in children if c is not None])


# ---------------------------------------------------------------- demo data

DEMO: list[dict[str, Any]] = [
    {"name": "Huaxia Steel Group", "tier": "A", "region": "East China", "contacts": [
        {"name": "Zhang Min", "email": "zhang.min@huaxia-steel.example", "phone": "+86 21 5555 0100",
         "time_zone": "Asia/Shanghai", "role": "Group purchasing director"}]},
    {"name": "Huaxia Cold Rolling Co.", "tier": "A", "region": "East China", "parent": 0, "contacts": [
        {"name": "Wang Fang", "email": "wang.fang@huaxia-steel.example", "phone": "+86 21 5555 0142",
         "time_zone": "Asia/Shanghai", "role": "Plant manager"}]},
    {"name": "Huaxia Steel Trading GmbH", "tier": "B", "region": "Europe", "parent": 0, "contacts": [
        {"name": "Jonas Becker", "email": "j.becker@huaxia-trading.example", "phone": "+49 40 5550 1234",
         "time_zone": "Europe/Berlin", "role": "Sales coordinator"}]},
    {"name": "Delta Distribution", "tier": "C", "region": "Europe", "contacts": [
        {"name": "Anna Schmidt", "email": "anna.schmidt@delta-distribution.example", "time_zone": "Europe/Berlin",
         "role": "Buyer"}]},
    {"name": "Riverside Tools", "tier": "D", "region": "South China", "contacts": [
        {"name": "Chen Jie", "email": "chen.jie@riverside-tools.example", "phone": "+86 20 5555 0188",
         "time_zone": "Asia/Shanghai"}]},
]


def seed_customers(funnel: Funnel, *, actor: str = "demo") -> list[int]:
    """Create the demo customers (a group with two subsidiaries, tiers A-D) once; [] when any customer exists."""
    with Session(funnel.engine) as session:
        if session.exec(select(Customer.id).limit(1)).first() is not None:
            return []
    ids: list[int] = []
    for entry in DEMO:
        parent = ids[entry["parent"]] if "parent" in entry else None
        view = create(funnel, name=entry["name"], tier=entry["tier"], region=entry["region"], parent_id=parent,
                      contacts=entry["contacts"], actor=actor)
        ids.append(view.id)
    return ids
