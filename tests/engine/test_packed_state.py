"""A workflow's state is stored deflated (engine.models.types.PackedJSON), and migration 0012 converts both ways."""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, select

from engine.db import alembic_config, migrate
from engine.instances import Funnel
from engine.models import Instance, packing
from engine.models.types import pack, unpack
from tests.factories import advance_to, start_opportunity

TABLES = ("instance", "human_task", "audit_event", "sla_clock", "sla_clock_event", "sla_due")


def states(funnel: Funnel) -> dict[int, dict[str, object]]:
    with Session(funnel.engine) as session:
        return {row.id: row.state for row in session.exec(select(Instance)) if row.id is not None}


def counts(funnel: Funnel) -> dict[str, int]:
    with funnel.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_given_an_instance_then_its_state_is_stored_as_deflated_json_a_fifth_of_its_size(funnel: Funnel) -> None:
    # given
    view = start_opportunity(funnel)
    advance_to(funnel, view.id, 3)
    # when the stored bytes are read as they are
    with funnel.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT state FROM instance WHERE id = :i"), {"i": view.id}).scalar_one()
    # then they inflate, from the shipped packing dictionary, to exactly the state the engine restores from,
    # in far fewer bytes
    state = states(funnel)[view.id]
    inflater = zlib.decompressobj(zdict=packing.current())
    assert json.loads(inflater.decompress(bytes(stored))) == state == unpack(pack(state))
    assert len(bytes(stored)) * 5 < len(json.dumps(state))
    assert funnel.get(view.id).stage == "Development"


def test_given_instances_when_0012_is_downgraded_and_upgraded_then_every_state_and_row_survives(
        funnel: Funnel) -> None:
    # given instances in several stages, with their tasks, audit trails and SLA clocks
    for stage in (1, 2, 4):
        advance_to(funnel, start_opportunity(funnel).id, stage)
    before, rows = states(funnel), counts(funnel)
    # when the schema goes back to JSON text ...
    command.downgrade(alembic_config(funnel.engine), "0011")
    with funnel.engine.connect() as conn:
        text = dict(conn.execute(sa.text("SELECT id, state FROM instance")).all())
    # ... then every state is its JSON again and nothing else was touched (no cascade through the rebuilt table)
    assert {i: json.loads(s) if isinstance(s, str) else s for i, s in text.items()} == before
    assert counts(funnel) == rows
    # and forward again: the same states, deflated, and the engine carries on with them
    migrate(funnel.engine)
    assert states(funnel) == before and counts(funnel) == rows
    first = min(before)
    advance_to(funnel, first, 2)
    assert funnel.get(first).stage == "Qualification"
