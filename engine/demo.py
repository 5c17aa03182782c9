"""A small demo data set: opportunities spread over the funnel, so a fresh service shows something."""

from __future__ import annotations

from sqlmodel import Session, select

from engine.instances import Funnel
from engine.models import Instance

STAGE_DATA: list[dict[str, object]] = [
    {"customer_name": "Baosteel Trading", "contact_name": "Li Wei", "need": "Cold-rolled coil supply",
     "estimated_amount": 180000.0},
    {"budget_confirmed": True, "decision_maker": "Procurement director", "expected_close_date": "2027-03-31"},
    {"project_started": True, "requirements_documented": True, "competitors": ["Nippon Steel"]},
    {"proposal_submitted": True, "solution_review_passed": True, "final_amount": 172500.0},
]

OPPORTUNITIES: list[tuple[str, str, int, str]] = [
    ("Baosteel Trading", "A", 1, "alice"),
    ("Northern Machinery", "B", 2, "bob"),
    ("Delta Distribution", "C", 3, "alice"),
    ("Harbour Cranes", "A", 4, "carol"),
    ("Riverside Tools", "D", 0, "bob"),
]


def seed(funnel: Funnel) -> int:
    """Create the demo opportunities once (no-op when any instance exists); return how many were made."""
    with Session(funnel.engine) as session:
        if session.exec(select(Instance.id).limit(1)).first() is not None:
            return 0
    made = 0
    for name, tier, advances, rep in OPPORTUNITIES:
        first = {**STAGE_DATA[0], "customer_name": name}
        view = funnel.start("sales_funnel", first, actor=rep, customer_tier=tier)
        for data in STAGE_DATA[:advances]:
            payload = {**data, "customer_name": name} if data is STAGE_DATA[0] else data
            view = funnel.advance(view.id, payload, actor=rep)
        made += 1
    return made
