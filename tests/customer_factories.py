"""Factories for customer, project-funding and link tests: valid data for each stage, whole-database snapshots."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from engine import customers
from engine.customers import CustomerView
from engine.instances import Funnel
from engine.views import InstanceView
from tests.factories import WON, advance_to

CONTACT: dict[str, Any] = {"name": "Dana Li", "email": "dana.li@acme-steel.example", "phone": "+86 21 5555 0100",
                           "time_zone": "Asia/Shanghai", "role": "Purchasing manager"}
# The data that satisfies the exit criteria of each project-funding stage (index = stage order - 1).
FUNDING_STAGE_DATA: list[dict[str, Any]] = [
    {"first_funding_amount": 34200, "first_funding_date": "2027-03-01"},
    {"integration_test_passed": True},
    {"quality_acceptance_passed": True, "final_invoice_number": "INV-2027-114", "final_invoice_date": "2027-09-01"},
    {"final_payment_amount": 22800, "final_payment_date": "2027-10-15"},
]
FUNDING_STAGES = ["First funding", "Integration test or phase funding", "Quality acceptance and final invoice",
                  "Final payment"]
TABLES = ("customer", "customer_contact", "customer_history", "instance", "audit_event", "human_task",
          "instance_link")


def make_customer(funnel: Funnel, *, tier: str = "B", name: str = "Acme Steel", region: str | None = "East China",
                  parent_id: int | None = None, contacts: list[dict[str, Any]] | None = None,
                  actor: str = "mgr") -> CustomerView:
    return customers.create(funnel, name=name, tier=tier, region=region, parent_id=parent_id,
                            contacts=[CONTACT] if contacts is None else contacts, actor=actor)


def make_group(funnel: Funnel) -> tuple[CustomerView, CustomerView, CustomerView]:
    """A group (A) with two subsidiaries (A and B)."""
    group = make_customer(funnel, tier="A", name="Huaxia Steel Group")
    first = make_customer(funnel, tier="A", name="Huaxia Cold Rolling", parent_id=group.id)
    second = make_customer(funnel, tier="B", name="Huaxia Trading", region="Europe", parent_id=group.id)
    return group, first, second


def start_for(funnel: Funnel, customer_id: int, *, actor: str = "rep1", **data: Any) -> InstanceView:
    """An opportunity of a customer record (its tier comes from the customer)."""
    return funnel.start("sales_funnel", data, actor=actor, customer_id=customer_id)


def win(funnel: Funnel, instance_id: int, *, actor: str = "rep1", **extra: Any) -> InstanceView:
    """Advance an opportunity through every stage and win it."""
    advance_to(funnel, instance_id, 5, actor=actor)
    return funnel.advance(instance_id, {**WON, **extra}, actor=actor)


def start_project(funnel: Funnel, *, actor: str = "fin1", **data: Any) -> InstanceView:
    return funnel.start("project_funding", data, actor=actor, customer_tier="B")


def fund_to(funnel: Funnel, instance_id: int, order: int, *, actor: str = "fin1") -> InstanceView:
    """Advance a project with valid data until it is in funding stage `order` (1-based)."""
    view = funnel.get(instance_id)
    while view.stage_order is not None and view.stage_order < order:
        view = funnel.advance(instance_id, FUNDING_STAGE_DATA[view.stage_order - 1], actor=actor)
    return view


def db_snapshot(funnel: Funnel) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table these features write, to prove a refusal wrote nothing anywhere."""
    with funnel.engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr) for t in TABLES}
