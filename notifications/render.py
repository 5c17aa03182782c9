"""Rendering of e-mails from Jinja2 templates in notifications/templates (HTML and plain text).

Contract:
    render(template: str, context: Mapping[str, Any]) -> Rendered(subject, text, html)
        `template` is a base name such as "escalation" or "assignment_alert"; files are
        templates/<name>.subject.j2, <name>.txt.j2 and <name>.html.j2 (autoescaped).
        Undefined context keys raise (StrictUndefined): templates/README.md lists each one's keys.

Filters the templates use: `local_time(dt, tz)` (an aware datetime in the recipient's IANA zone),
`duration(seconds)` ("2 h 15 min", sign dropped).

Stored contexts (the outbox keeps a template's context as JSON and renders at delivery):
    store(context) -> JSON-safe dict     aware datetimes become {"$datetime": ISO 8601}; anything else
                                         that JSON cannot hold raises TypeError naming its key
    restore(stored) -> context           the same context again, datetimes and all
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Recipient:
    """A person an e-mail goes to, and the zone its times are shown in (SLA mail and alerts alike)."""

    login: str
    name: str
    email: str
    time_zone: str


class Rendered(NamedTuple):
    """One e-mail's three parts, ready for notifications.outbox.enqueue."""

    subject: str
    text: str
    html: str


class TemplateNotFound(LookupError):
    """No such e-mail template; the message lists the ones there are."""

    def __init__(self, template: str) -> None:
        super().__init__(f"no e-mail template {template!r}; there are: {', '.join(names())}")


def render(template: str, context: Mapping[str, Any]) -> Rendered:
    """Render the subject, plain text and HTML of `template` with one context."""
    env = _environment()
    try:
        parts = [env.get_template(f"{template}.{part}.j2") for part in ("subject", "txt", "html")]
    except jinja2.TemplateNotFound as err:
        raise TemplateNotFound(template) from err
    subject, text, html = (t.render(context) for t in parts)
    return Rendered(" ".join(subject.split()), text.strip() + "\n", html.strip() + "\n")


@lru_cache(maxsize=1)
def names() -> tuple[str, ...]:
    """The template base names there are (each has a subject, a text and an HTML file); they ship with the code."""
    return tuple(sorted(p.name.removesuffix(".subject.j2") for p in TEMPLATES.glob("*.subject.j2")))


_DATETIME = "$datetime"
_PLAIN = frozenset({str, int, bool, type(None)})  # floats are checked: JSON (and PostgreSQL) has no NaN


class _Unstorable(TypeError):
    """A value JSON cannot hold; `where` grows key by key on the way out (paths are built only on error)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(why)
        self.where, self.why = where, why


def store(context: Mapping[str, Any]) -> dict[str, Any]:
    """`context` as JSON can hold it, so the outbox can render it later exactly as it would have now."""
    try:
        return _mapping(context)
    except _Unstorable as err:
        raise TypeError(f"e-mail context {err.where.lstrip('.')}: {err.why}") from None


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    if _DATETIME in value:
        raise _Unstorable("", f"the key {_DATETIME!r} is reserved")
    out = {}
    for key, item in value.items():
        try:  # the common case (a plain value) costs one type lookup
            out[str(key)] = item if type(item) in _PLAIN else _stored(item)
        except _Unstorable as err:
            err.where = f".{key}{err.where}"
            raise
    return out


def _stored(value: Any) -> Any:
    kind = type(value)  # exact types first: this runs for every value of every queued e-mail
    if kind is dict:
        return _mapping(value)
    if kind is float or isinstance(value, float):
        if not math.isfinite(value):
            raise _Unstorable("", f"{value} is not a number JSON can hold")
        return float(value)
    if kind in _PLAIN or isinstance(value, (str, int)):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _Unstorable("", "a naive datetime; pass an aware one")
        return {_DATETIME: value.isoformat()}
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, (list, tuple)):
        out = []
        for i, item in enumerate(value):
            try:
                out.append(item if type(item) in _PLAIN else _stored(item))
            except _Unstorable as err:
                err.where = f"[{i}]{err.where}"
                raise
        return out
    raise _Unstorable("", f"a {type(value).__name__} cannot be stored; pass str, number, bool, None, datetime, "
                          "list or dict")


def restore(stored: Any) -> Any:
    """The inverse of `store`: datetimes come back aware."""
    if isinstance(stored, dict):
        if len(stored) == 1 and _DATETIME in stored:
            return datetime.fromisoformat(stored[_DATETIME])
        return {k: restore(v) for k, v in stored.items()}
    if isinstance(stored, list):
        return [restore(v) for v in stored]
    return stored


def link(base_url: str, path: str) -> str:
    """An absolute link for an e-mail: FUNNEL_BASE_URL joined to an API path, one slash between."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def local_time(value: datetime, tz: str) -> str:
    """`value` as the recipient reads it, e.g. 'Mon 23 Nov 2026 10:00 CET (Europe/Berlin)'."""
    if value.tzinfo is None:
        raise ValueError("local_time needs an aware datetime")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone, tz = ZoneInfo("UTC"), "UTC"
    local = value.astimezone(zone)
    abbreviation = local.tzname() or tz
    suffix = "" if abbreviation == tz else f" ({tz})"
    return f"{local:%a %d %b %Y %H:%M} {abbreviation}{suffix}"


def duration(seconds: float) -> str:
    """Hours and minutes of (business) time, without sign: the template says 'left' or 'overdue'."""
    minutes = int(abs(seconds) // 60)
    if minutes == 0:
        return "less than a minute"
    hours, rest = divmod(minutes, 60)
    if hours == 0:
        return f"{rest} min"
    return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment: strict (a missing key is an error), HTML parts autoescaped, text parts not."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # only *.html.j2 escape; _macros.j2 returns plain text, which the HTML parts escape on output
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # templates ship with the code: checking their files' mtimes on every render cost ~20% of a render,
        # and a burst of escalations renders tens of thousands (edit a template: restart the service)
        auto_reload=False,
    )
    env.filters["local_time"] = local_time
    env.filters["duration"] = duration
    return env
