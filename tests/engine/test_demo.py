"""The demo data set behind `./dev serve`: realistic, spread over the funnel, seeded once."""

from __future__ import annotations

from engine import demo
from engine.instances import Funnel


def test_given_an_empty_database_when_seeded_twice_then_one_spread_out_data_set(funnel: Funnel) -> None:
    # when
    made = demo.seed(funnel)
    again = demo.seed(funnel)
    # then
    assert (made, again) == (5, 0)
    views = [funnel.get(i) for i in range(1, 6)]
    assert sorted(v.stage_order or 0 for v in views) == [1, 2, 3, 4, 5]
    assert all(v.customer_id is not None and v.customer_tier in "ABCD" for v in views)
    assert all(v.assignee for v in views)
