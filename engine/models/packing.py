"""How PackedJSON columns store a document: compact JSON, deflated (zlib) from a preset dictionary.

Stored documents of one kind repeat the same keys and phrases: Spiff's task fields in a workflow state,
the shape and wording of an assignment's explanation, an SLA target's DMN detail. zlib can start from a
*preset dictionary*, text the compressor refers back to as if it had come just before the document, so
those repeats cost a few bits instead of their first spelling in every row. With the shipped dictionary a
sales-funnel state deflates to ~500 B instead of ~950 B, and an assignment's audit entry to ~220 B
instead of ~500 B (its JSON is ~1.1 KB). Packing costs ~25 us and unpacking ~7 us per document.

Every stored document says which dictionary it needs: RFC 1950 puts the dictionary's Adler-32 in the
zlib header (FDICT, DICTID). So documents packed before dictionaries existed still read, and a new
dictionary is added as a new numbered file (`python -m bench.dictionary`); the newest one packs and all
of them keep reading. A shipped dictionary is never edited: tests pin each file's checksum.
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path
from typing import Any

DIRECTORY = Path(__file__).with_name("dictionaries")
LEVEL = 6  # zlib's default: level 1 saves ~8 us per write for ~7% more bytes
FDICT = 0x20  # RFC 1950: the FLG bit saying a DICTID follows the two header bytes


class UnknownDictionary(LookupError):
    """A stored document needs a packing dictionary this version of the engine does not ship."""

    def __init__(self, dictid: int) -> None:
        self.dictid = dictid
        super().__init__(f"this document was packed with dictionary {dictid:#010x}, which this version of the "
                         f"engine does not have (known: {', '.join(f'{k:#010x}' for k in dictionaries())}); "
                         "run the engine version that wrote it, or a newer one")


@functools.cache
def dictionaries() -> dict[int, bytes]:
    """Every shipped dictionary by its Adler-32 (the DICTID a stored document names)."""
    return {zlib.adler32(d): d for d in _files().values()}


@functools.cache
def current() -> bytes:
    """The dictionary new documents are packed with: the highest-numbered file."""
    files = _files()
    return files[max(files)] if files else b""


def _files() -> dict[int, bytes]:
    return {int(path.stem): path.read_bytes() for path in DIRECTORY.glob("*.txt")}


def pack(value: Any) -> bytes:
    """A document as PackedJSON stores it."""
    text = json.dumps(value, separators=(",", ":")).encode()
    dictionary = current()
    if not dictionary:
        return zlib.compress(text, LEVEL)
    compressor = zlib.compressobj(LEVEL, zdict=dictionary)
    return compressor.compress(text) + compressor.flush()


def unpack(stored: bytes | memoryview) -> Any:
    """The document PackedJSON stored (bytes, or a memoryview as some drivers hand back)."""
    data = bytes(stored)
    if len(data) < 6 or not data[1] & FDICT:
        return json.loads(zlib.decompress(data))
    dictid = int.from_bytes(data[2:6], "big")
    dictionary = dictionaries().get(dictid)
    if dictionary is None:
        raise UnknownDictionary(dictid)
    inflater = zlib.decompressobj(zdict=dictionary)
    return json.loads(inflater.decompress(data) + inflater.flush())
