"""The only module that reads the wall clock; everything else is handed `now` so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC now; pass the result down instead of calling this deeper in the engine."""
    return datetime.now(UTC)
