"""bench.dictionary: a packing dictionary built from what the engine stores pays for itself."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from bench.dictionary import LIMIT, SOURCES, UUID, build, documents, scrub


def test_given_the_demo_data_set_when_a_dictionary_is_built_then_it_fits_zlib_and_halves_a_state(
        tmp_path: Path) -> None:
    # given every packed column's documents from a scratch database holding the demo
    found = documents(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    assert all(found[table] for table, _ in SOURCES)
    # when
    dictionary = build(found[table] for table, _ in SOURCES)
    # then it is within what zlib can use, holds nothing row-specific ...
    assert 0 < len(dictionary) <= LIMIT
    assert not UUID.search(dictionary.decode())
    # ... and a state packed with it takes far fewer bytes than plain zlib's
    state = found["instance"][-1].encode()
    compressor = zlib.compressobj(5, zdict=dictionary)
    assert len(compressor.compress(state) + compressor.flush()) * 1.5 < len(zlib.compress(state, 5))


def test_given_a_document_then_scrub_blanks_its_uuids_and_epoch_floats_only() -> None:
    doc = json.dumps({"parent": "45cc1481-9586-41d1-84f3-4b8d9ec9f116", "last_state_change": 1795447117.2071314,
                      "state": 64, "amount": 180000.0}, separators=(",", ":"))
    assert scrub(doc) == '{"parent":"","last_state_change":,"state":64,"amount":180000.0}'
