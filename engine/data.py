"""Checks on submitted business data: JSON-shaped, named like variables, bounded in size."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from engine import sandbox
from engine.errors import InvalidInput

MAX_DATA_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_INT = 2**63 - 1  # what every database and JSON consumer we feed can hold exactly
# Set by the engine from the customer record, never by a caller.
RESERVED = frozenset({"customer_tier"})


def validate_data(data: Any) -> dict[str, Any]:
    """Return a JSON-clean copy of `data` or raise InvalidInput naming the offending field."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"data must be an object of field names to values, not {type(data).__name__}", "data")
    for key in data:
        _check_name(key)
    for key, value in data.items():
        _check_value(value, key, depth=0)
    encoded = json.dumps(dict(data), allow_nan=False)
    if len(encoded.encode()) > MAX_DATA_BYTES:
        raise InvalidInput(f"data is larger than {MAX_DATA_BYTES // 1024} KB", "data")
    clean: dict[str, Any] = json.loads(encoded)
    return clean


def _check_name(key: Any) -> None:
    if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
        raise InvalidInput(
            f"field name {key!r} is not allowed: use letters, digits and underscores, not starting with "
            "a digit or underscore (fields are variables in workflow expressions)",
            str(key),
        )
    if key in RESERVED or key in sandbox.SAFE_FUNCTIONS:
        raise InvalidInput(f"field name '{key}' is reserved; choose another name", key)


def _check_value(value: Any, path: str, *, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"field '{path}' is nested more than {MAX_DEPTH} levels deep", path)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"field '{path}' contains a NUL character; remove it", path)
        return
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise InvalidInput(f"field '{path}' is a whole number beyond ±{MAX_INT}; send it as text", path)
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"field '{path}' must be a finite number", path)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]", depth=depth + 1)
        return
    if isinstance(value, Mapping):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"field '{path}' has a non-text key {k!r}", path)
            _check_value(item, f"{path}.{k}", depth=depth + 1)
        return
    raise InvalidInput(f"field '{path}' has a value of type {type(value).__name__}; use JSON values", path)


def merge_for_criteria(current: Mapping[str, Any], submitted: Mapping[str, Any], *,
                       customer_tier: str | None) -> dict[str, Any]:
    """What criteria see: instance data, overlaid by the submission, plus the customer's tier."""
    return {**current, **submitted, "customer_tier": customer_tier}
