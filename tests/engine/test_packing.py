"""Packed documents (engine.models.packing): dictionaries are fixed once shipped, every stored form reads back,
and audit changes and SLA ledger details are stored packed (migration 0015 converts both ways)."""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from engine.db import alembic_config, migrate
from engine.instances import Funnel
from engine.models import AuditEvent, packing
from engine.models.sla import SlaClockEvent
from engine.models.types import pack, unpack
from tests.conftest import FakeClock
from tests.factories import advance_to
from tests.people_factories import opportunity, sales_roster
from tests.sla_factories import MONDAY_9AM, ticket

# A shipped dictionary is never edited: rows packed with it need exactly these bytes to be read again.
# A new dictionary is a new file (python -m bench.dictionary) and a new line here.
SHIPPED = {1: 0x0B71AC54}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30)


def stored(funnel: Funnel, table: str, column: str) -> dict[int, bytes]:
    with funnel.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
    return {row[0]: row[1] for row in rows}


def documents(funnel: Funnel) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Every audit entry's changes and every ledger entry's detail, as the engine reads them."""
    with Session(funnel.engine) as session:
        audit = {e.id or 0: e.changes for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))}
        ledger = {e.id or 0: e.detail for e in session.exec(select(SlaClockEvent))}
    return audit, ledger


@pytest.fixture
def history(funnel: Funnel, clock: FakeClock) -> Funnel:
    """Assigned opportunities in several stages (explanations in their audit) and a service ticket's SLA ledger."""
    clock.now = MONDAY_9AM
    sales_roster(funnel.engine, now=clock.now)
    for stage in (0, 2):
        advance_to(funnel, opportunity(funnel).id, stage)
    ticket(funnel)
    return funnel


# ---------------------------------------------------------------- the format


def test_given_the_shipped_dictionaries_then_none_has_changed_and_the_newest_packs() -> None:
    # given / when the files are read
    found = {int(p.stem): zlib.adler32(p.read_bytes()) for p in packing.DIRECTORY.glob("*.txt")}
    # then they are exactly the pinned ones, the newest is current, and a packed document names it
    assert found == SHIPPED
    assert zlib.adler32(packing.current()) == SHIPPED[max(SHIPPED)]
    blob = pack({"a": 1})
    assert blob[1] & packing.FDICT and int.from_bytes(blob[2:6], "big") == SHIPPED[max(SHIPPED)]


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_given_any_json_document_when_packed_and_unpacked_then_it_is_the_same_in_the_same_key_order(
        value: Any) -> None:
    # when
    back = unpack(memoryview(pack(value)))
    # then
    assert back == value
    assert json.dumps(back) == json.dumps(value)


def test_given_many_threads_packing_at_once_then_each_gets_the_same_bytes_as_one_thread() -> None:
    # given documents of different sizes and one thread's packing of them
    docs = [{"n": i, "text": "Time in stage: Qualification " * (i % 7), "tasks": list(range(i % 50))}
            for i in range(400)]
    expected = [pack(d) for d in docs]
    # when eight threads pack them at once (all copying the one primed compressor)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(pack, docs))
    # then
    assert got == expected
    assert [unpack(b) for b in got] == docs


def test_given_a_document_packed_before_dictionaries_then_it_still_reads() -> None:
    # given the stored form of revision 0012: plain zlib over compact JSON
    old = zlib.compress(b'{"tasks":{"x":{"state":16}},"data":{}}', 6)
    # when / then
    assert unpack(old) == {"tasks": {"x": {"state": 16}}, "data": {}}


def test_given_a_document_packed_with_an_unknown_dictionary_then_the_error_names_it_and_what_to_do() -> None:
    # given a document a newer engine packed with a dictionary this one does not ship
    compressor = zlib.compressobj(6, zdict=b'{"from a newer engine":')
    blob = compressor.compress(b'{"from a newer engine":1}') + compressor.flush()
    # when / then
    with pytest.raises(packing.UnknownDictionary, match=r"dictionary 0x[0-9a-f]{8}.*does not have.*newer one") as err:
        unpack(blob)
    assert err.value.dictid == int.from_bytes(blob[2:6], "big")


# ---------------------------------------------------------------- in the database


def test_given_assignments_and_clocks_then_audit_and_ledger_are_stored_packed_and_read_back_whole(
        history: Funnel) -> None:
    # given / when the stored bytes are read as they are
    audit, ledger = documents(history)
    raw_audit = stored(history, "audit_event", "changes")
    raw_ledger = stored(history, "sla_clock_event", "detail")
    # then each one unpacks to what the engine reads ...
    assert {i: unpack(b) for i, b in raw_audit.items()} == audit
    assert {i: unpack(b) for i, b in raw_ledger.items()} == ledger
    # ... an assignment's explanation among them, in a fifth of its JSON's bytes
    explained = [i for i, changes in audit.items() if "explanation" in changes]
    assert explained
    for i in explained:
        assert len(bytes(raw_audit[i])) * 5 < len(json.dumps(audit[i]))
    assert any(detail.get("decision") == "sla_targets" for detail in ledger.values())


def test_given_packed_history_when_0015_is_downgraded_and_upgraded_then_every_entry_survives_and_stays_append_only(
        history: Funnel) -> None:
    # given
    before = documents(history)
    # when the schema goes back to JSON ...
    command.downgrade(alembic_config(history.engine), "0014")
    # ... then every entry is its JSON again, and the history still refuses changes
    with history.engine.connect() as conn:
        text = dict(conn.execute(sa.text("SELECT id, changes FROM audit_event")).all())
    assert {i: json.loads(v) if isinstance(v, str) else v for i, v in text.items()} == before[0]
    for statement in ("UPDATE audit_event SET reason = 'x'", "DELETE FROM sla_clock_event"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), history.engine.begin() as conn:
            conn.execute(sa.text(statement))
    # and forward again: the same documents, packed, still append-only, and the engine carries on
    migrate(history.engine)
    assert documents(history) == before
    assert all(bytes(b)[1] & packing.FDICT for b in stored(history, "audit_event", "changes").values())
    for statement in ("UPDATE sla_clock_event SET reason = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), history.engine.begin() as conn:
            conn.execute(sa.text(statement))
    view = opportunity(history)
    assert "explanation" in history.history(view.id)[-1].changes
