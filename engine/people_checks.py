"""Input checks for the people service: each refusal names the field and says what to write instead."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import InvalidInput
from engine.models.people import ROLES

LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
USER_FIELDS = ("display_name", "email", "time_zone", "calendar", "region", "roles", "product_lines", "skills",
               "capacity", "active")


def text(value: Any, field: str, *, limit: int = 200, optional: bool = False) -> str | None:
    """Trimmed, bounded text: names and titles are shown in lists and e-mails."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} must be a non-empty text", field)
    if len(value.strip()) > limit:
        raise InvalidInput(f"{field} must be at most {limit} characters", field)
    return value.strip()


def login(value: Any, field: str = "login") -> str:
    """Logins appear in URLs, audit entries and rules, so they are plain lower-case words."""
    if not isinstance(value, str) or not LOGIN.fullmatch(value):
        raise InvalidInput(f"{field} {value!r} must be lower-case letters, digits, '.', '_' or '-' "
                           "(at most 100, starting with a letter or digit)", field)
    return value


def words(values: Any, field: str, allowed: Sequence[str] | None = None) -> list[str]:
    """A list of distinct short texts (skills, product lines, roles), optionally from a fixed set."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidInput(f"{field} must be a list of texts, e.g. [\"{(allowed or ['cranes'])[0]}\"]", field)
    out: list[str] = []
    for value in values:
        word = text(value, field, limit=100)
        assert word is not None
        if allowed is not None and word not in allowed:
            raise InvalidInput(f"{field}: {word!r} is not one of {', '.join(allowed)}", field)
        if word not in out:
            out.append(word)
    return out


def time_zone(value: Any) -> str:
    """An IANA zone: explanations and e-mails show times in the person's own zone."""
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"time_zone {value!r} is not an IANA time zone such as 'Europe/Berlin'",
                           "time_zone") from None
    return str(value)


def capacity(value: Any) -> int | None:
    """Max open tasks; None means no cap."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"capacity must be a whole number of open tasks from 1 (or empty for no cap), "
                           f"not {value!r}", "capacity")
    return value


def aware(value: Any, field: str) -> datetime:
    """An aware moment in UTC: a naive one is ambiguous across the team's time zones."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} must be a date and time with a time zone (e.g. 2026-12-01T09:00+01:00)",
                           field)
    return value.astimezone(UTC)  # stored in UTC: SQLite keeps no offset, so a local time would shift


def clean_user(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate user fields; unknown fields are refused by name."""
    unknown = sorted(set(changes) - set(USER_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown user field(s) {', '.join(unknown)}; known: {', '.join(USER_FIELDS)}",
                           unknown[0])
    check = {
        "display_name": lambda v: text(v, "display_name"),
        "email": lambda v: email(v),
        "time_zone": time_zone,
        "calendar": lambda v: text(v, "calendar", limit=100),
        "region": lambda v: text(v, "region", limit=100, optional=True),
        "roles": lambda v: words(v, "roles", ROLES),
        "product_lines": lambda v: words(v, "product_lines"),
        "skills": lambda v: words(v, "skills"),
        "capacity": capacity,
        "active": lambda v: flag(v, "active"),
    }
    return {key: check[key](value) for key, value in changes.items()}


def email(value: Any) -> str:
    """Roughly an address: alerts and escalations are mailed to it."""
    if not isinstance(value, str) or not EMAIL.fullmatch(value.strip()) or len(value) > 320:
        raise InvalidInput(f"email {value!r} is not an e-mail address like name@example.com", "email")
    return value.strip()


def flag(value: Any, field: str) -> bool:
    """A real boolean, so 'false' (a text) is not taken as true."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", field)
    return value
