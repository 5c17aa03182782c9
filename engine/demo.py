"""A small demo data set: opportunities spread over the funnel, so a fresh service shows something."""

from __future__ import annotations

from sqlmodel import Session, select

from engine import customers, people
from engine.instances import Funnel
from engine.models import Instance

STAGE_DATA: list[dict[str, object]] = [
    {"customer_name": "Baosteel Trading", "contact_name": "Li Wei", "need": "Cold-rolled coil supply",
     "estimated_amount": 180000.0},
    {"budget_confirmed": True, "decision_maker": "Procurement director", "expected_close_date": "2027-03-31"},
    {"project_started": True, "requirements_documented": True, "competitors": ["Nippon Steel"]},
    {"proposal_submitted": True, "solution_review_passed": True, "final_amount": 172500.0},
]

# (stage to reach, rep who creates it, region, product line): customers come from seed_customers
OPPORTUNITIES: list[tuple[int, str, str, str]] = [
    (1, "alice", "north", "coil"),
    (2, "bob", "north", "coil"),
    (3, "carol", "south", "tools"),
    (4, "diego", "south", "cranes"),
    (0, "alice", "north", "cranes"),
]


def seed(funnel: Funnel) -> int:
    """Seed roster, customers and opportunities once (no-op when any instance exists); return how many."""
    with Session(funnel.engine) as session:
        if session.exec(select(Instance.id).limit(1)).first() is not None:
            return 0
    people.seed_roster(funnel.engine, now=funnel.clock())
    customer_ids = customers.seed_customers(funnel)
    made = 0
    for (advances, rep, region, line), customer_id in zip(OPPORTUNITIES, customer_ids, strict=False):
        # the customer record names the customer; the data only says what the opportunity is about
        first = {k: v for k, v in STAGE_DATA[0].items() if k != "customer_name"}
        first.update(region=region, product_line=line)
        view = funnel.start("sales_funnel", first, actor=rep, customer_id=customer_id)
        for data in STAGE_DATA[:advances]:
            extra = {"manager_approval": "approved by the sales manager"} if view.customer_tier == "D" else {}
            view = funnel.advance(view.id, {**data, **extra}, actor=rep)
        made += 1
    return made
