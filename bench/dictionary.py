"""Build a new packing dictionary (engine.models.packing) from what the engine really stores.

    python -m bench.dictionary            # writes engine/models/dictionaries/<next number>.txt

The demo data set (`engine.demo`: opportunities in every stage of the sales funnel, with their
assignments, stage moves and SLA clocks) and a new instance of each other shipped workflow are created
in a scratch SQLite database; the documents the packed columns hold - workflow states, audit changes,
SLA ledger details - are taken from it, their UUIDs and epoch floats (unique to each row, so useless
to refer back to) are blanked, and the distinct ones are joined (one state per workflow), most
frequent kinds last (nearest to the document, cheapest to refer to), up to the 32 KB zlib can use.
A shipped dictionary is never changed: once rows are packed with it, they need it. Run this when
stored documents have changed shape enough that a new one pays off, then pin the new file's checksum
in tests/engine/test_packing.py.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from engine import demo
from engine.bootstrap import open_funnel
from engine.models.packing import DIRECTORY, unpack
from engine.settings import Settings

LIMIT = 32 * 1024 - 262  # zlib's window less its minimum lookahead: the most of a dictionary it can use
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EPOCH_FLOAT = re.compile(r"(?<=:)\d{10}\.\d+")
# the demo covers the sales funnel; one new instance of each other shipped workflow adds its words
OTHERS: tuple[tuple[str, dict[str, object], dict[str, object]], ...] = (
    ("service_request", {"customer_name": "Acme Steel", "contact_name": "Dana Li", "channel": "phone",
                         "category": "technical_service", "priority": "high",
                         "description": "Coil line stops every hour"}, {"customer_tier": "C"}),
    ("project_funding", {}, {}),
    ("routing_slip", {}, {}),
)
# least useful first: the end of the dictionary is what zlib reaches most cheaply. Each query yields
# (group, document) and the last document of each group is kept. States: the earliest stage of each
# workflow, where most open work is (their task trees are alike; a few states would fill it alone).
SOURCES = (
    ("sla_clock_event", "SELECT id, detail FROM sla_clock_event ORDER BY id"),
    ("audit_event", "SELECT id, changes FROM audit_event ORDER BY id"),
    ("instance", "SELECT workflow, state FROM instance ORDER BY stage_order DESC, id DESC"),
)


def documents(url: str) -> dict[str, list[str]]:
    """Each packed column's documents, as compact JSON, from a database holding the demo data set."""
    funnel = open_funnel(Settings(database_url=url))
    try:
        demo.seed(funnel)
        for workflow, data, options in OTHERS:
            funnel.start(workflow, data, actor="alice", **options)  # type: ignore[arg-type]
        out: dict[str, list[str]] = {}
        with funnel.engine.connect() as conn:
            for table, query in SOURCES:
                kept = {group: json.dumps(_document(v), separators=(",", ":"))
                        for group, v in conn.execute(sa.text(query)).all()}
                out[table] = list(kept.values())
        return out
    finally:
        funnel.engine.dispose()


def _document(stored: object) -> object:
    if isinstance(stored, (bytes, memoryview)):
        return unpack(stored)
    return json.loads(stored) if isinstance(stored, str) else stored


def scrub(text: str) -> str:
    """The document without what only this row has."""
    return EPOCH_FLOAT.sub("", UUID.sub("", text))


def build(groups: Iterable[list[str]]) -> bytes:
    """Distinct scrubbed documents, in the given order of kinds, trimmed from the front to zlib's limit."""
    seen: set[str] = set()
    parts: list[str] = []
    for docs in groups:
        for doc in docs:
            text = scrub(doc)
            if text not in seen:
                seen.add(text)
                parts.append(text)
    return "\n".join(parts).encode()[-LIMIT:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a new packing dictionary built from the demo data set")
    parser.add_argument("--print", action="store_true", help="print it instead of writing a file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = documents(f"sqlite:///{Path(tmp) / 'dictionary.sqlite3'}")
    dictionary = build(found[table] for table, _ in SOURCES)
    if args.print:
        print(dictionary.decode())
        return
    numbers = [int(p.stem) for p in DIRECTORY.glob("*.txt")]
    path = DIRECTORY / f"{max(numbers, default=0) + 1}.txt"
    DIRECTORY.mkdir(exist_ok=True)
    path.write_bytes(dictionary)
    print(f"wrote {path} ({len(dictionary):,} bytes from {sum(map(len, found.values()))} documents)")


if __name__ == "__main__":
    main()
