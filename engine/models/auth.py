"""API tokens (issue 6): bearer tokens bound to a user; only a SHA-256 hash of each token is stored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from engine.clock import utcnow
from engine.models.types import timestamp


class ApiToken(SQLModel, table=True):
    """One issued token: `key` finds the row, the hash of the whole token proves it (compared in constant time)."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=32, unique=True, index=True)
    token_hash: str = Field(max_length=64)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    label: str | None = Field(default=None, max_length=200)
    created_by: str = Field(max_length=200)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
    revoked_at: datetime | None = timestamp(nullable=True)
