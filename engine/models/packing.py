"""How PackedJSON columns store a document: compact JSON, deflated (zlib) from a preset dictionary.

Stored documents of one kind repeat the same keys and phrases: Spiff's task fields in a workflow state,
the shape and wording of an assignment's explanation, an SLA target's DMN detail. zlib can start from a
*preset dictionary*, text the compressor refers back to as if it had come just before the document, so
those repeats cost a few bits instead of their first spelling in every row. With the shipped dictionary a
sales-funnel state deflates to ~565 B instead of ~950 B, and an assignment's audit entry (~1 KB of
JSON) to ~120 B instead of ~500 B. Packing a state costs ~26 us, unpacking ~7 us.

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
# with the dictionary, level 5 packs a state in ~26 us to ~565 B; level 6 takes ~45 us for ~540 B
LEVEL = 5
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


@functools.cache
def _primed() -> Any:
    """A compressor that has read the current dictionary: copying it (~7 us) is cheaper than priming (~30 us)."""
    return zlib.compressobj(LEVEL, zdict=current()) if current() else None


def pack(value: Any) -> bytes:
    """A document as PackedJSON stores it."""
    text = json.dumps(value, separators=(",", ":")).encode()
    primed = _primed()
    if primed is None:
        return zlib.compress(text, LEVEL)
    compressor = primed.copy()  # zlib locks the object while copying: safe from any thread
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
