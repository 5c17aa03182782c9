"""The engine-advance scenario's baselines do the work they are named for: the floor with a durable commit commits
once per advance, on the real database."""

from __future__ import annotations

import sqlalchemy as sa

from bench.engine_advance import STAGE_DATA, floor
from engine.db import make_engine


def test_given_a_database_when_the_floor_commits_then_each_advance_is_one_commit_there(db_url: str) -> None:
    # given three instances of the shipped sales funnel, advanced by bare Spiff
    # when the floor runs with a durable commit per advance
    rate = floor(3, commit_to=db_url)
    # then every advance of every instance left its own committed update behind
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            counted = dict(conn.execute(sa.text("SELECT id, advances FROM floor_commit ORDER BY id")).all())
    finally:
        engine.dispose()
    assert counted == {0: len(STAGE_DATA), 1: len(STAGE_DATA), 2: len(STAGE_DATA)}
    assert rate > 0
