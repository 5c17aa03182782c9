"""Bearer tokens for the API: issue, verify, revoke. Only a SHA-256 hash of each token is ever stored.

A token reads `fnl_<key>_<secret>`: the public `key` finds its row without scanning, and the hash of
the whole token is compared with `hmac.compare_digest`, so the check takes the same time however
much of a guess is right. A token of an inactive user, or a revoked one, is refused like a bad one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import people_checks
from engine.db import read_session
from engine.errors import FunnelError, InvalidInput, NotFound
from engine.models.auth import ApiToken
from engine.models.people import Team, User
from engine.permissions import Principal, principal_from, teams_of
from engine.writes import row_object

PREFIX = "fnl"
_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{32,64}})")


class Unauthenticated(FunnelError):
    """No token, a malformed, unknown or revoked one, or one of an inactive user: say how to get a valid one."""

    code = "unauthenticated"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # no credentials at all (vs. credentials that are not valid)


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: `token` is shown once and never stored."""

    id: int
    key: str
    login: str
    token: str
    label: str | None
    created_at: datetime


@dataclass(frozen=True)
class TokenView:
    """A stored token without its secret, for listing and revoking."""

    id: int
    key: str
    login: str
    label: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(engine: Engine, login: str, *, actor: str, now: datetime, label: str | None = None) -> IssuedToken:
    """A new token for an active user; the caller shows it once (it cannot be recovered later)."""
    note = people_checks.text(label, "label", limit=200, optional=True)
    with Session(engine) as session:
        user = _user(session, login)
        if not user.active:
            raise InvalidInput(f"{login} is inactive: reactivate them before issuing a token", "login")
        assert user.id is not None
        key = secrets.token_hex(8)
        token = f"{PREFIX}_{key}_{secrets.token_urlsafe(32)}"
        row = ApiToken(key=key, token_hash=digest(token), user_id=user.id, label=note, created_by=actor,
                       created_at=now)
        session.add(row)
        session.commit()
        assert row.id is not None
        return IssuedToken(row.id, key, user.login, token, note, now)


_TOKEN_T = ApiToken.__table__  # type: ignore[attr-defined]
_USER = User.__table__  # type: ignore[attr-defined]
_TEAM = Team.__table__  # type: ignore[attr-defined]
# Built once: every API call verifies its token. The token, its user, and the user's teams (one row each, or one
# row without a team): one round trip.
_TEAM_COLUMNS, _TEAM_OF_USER = teams_of(_USER.c.id)
_TOKEN_USER = (sa.select(_TOKEN_T.c.token_hash, _TOKEN_T.c.revoked_at, *_USER.c, *_TEAM_COLUMNS)
               .select_from(_TOKEN_T.join(_USER, _USER.c.id == _TOKEN_T.c.user_id).outerjoin(_TEAM, _TEAM_OF_USER))
               .where(_TOKEN_T.c.key == sa.bindparam("b_key")).order_by(_TEAM.c.id))


def verify(engine: Engine, token: str | None) -> Principal:
    """The user a bearer token belongs to, with their roles and teams; Unauthenticated otherwise."""
    how = "ask an administrator for one (funnel users token LOGIN) and send 'Authorization: Bearer <token>'"
    if not token:
        raise Unauthenticated(f"this call needs a bearer token: {how}", missing=True)
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise Unauthenticated(f"the bearer token is malformed (expected {PREFIX}_<key>_<secret>): {how}")
    with read_session(engine) as session:
        conn = session.connection()
        rows = conn.execute(_TOKEN_USER, {"b_key": match.group(1)}).all()
        found = rows[0] if rows else None
        if found is None or not hmac.compare_digest(found.token_hash, digest(token)):
            raise Unauthenticated(f"the bearer token is not valid: {how}")
        user = row_object(User, {c.name: found._mapping[c] for c in _USER.c})
        if found.revoked_at is not None:
            raise Unauthenticated(f"the bearer token was revoked: {how}")
        if not user.active:
            raise Unauthenticated(f"user {user.login} is inactive and may not use the API")
        return principal_from(conn, user, rows)


def revoke(engine: Engine, key: str, *, now: datetime) -> TokenView:
    """Revoke a token by its key (the part after 'fnl_'); revoking twice is harmless."""
    with Session(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.key == key)).first() if isinstance(key, str) else None
        if row is None:
            raise NotFound(f"no token with key {key!r}; list them with: funnel users tokens LOGIN")
        if row.revoked_at is None:
            session.execute(sa.update(ApiToken).where(col(ApiToken.id) == row.id).values(revoked_at=now))
            session.commit()
        return _views(session, ApiToken.key == key)[0]


def tokens_of(engine: Engine, login: str) -> list[TokenView]:
    """A user's tokens, oldest first, without secrets."""
    with read_session(engine) as session:
        user = _user(session, login)
        return _views(session, ApiToken.user_id == user.id)


def _views(session: Session, where: Any) -> list[TokenView]:
    stmt = (select(ApiToken, User.login).join(User, col(User.id) == col(ApiToken.user_id))
            .where(where).order_by(col(ApiToken.id)))
    return [TokenView(t.id or 0, t.key, login, t.label, t.created_by, t.created_at, t.revoked_at)
            for t, login in session.exec(stmt)]


def _user(session: Session, login: str) -> User:
    user = session.exec(select(User).where(User.login == login)).first() if isinstance(login, str) else None
    if user is None:
        raise NotFound(f"no user with login {login!r}")
    return user
