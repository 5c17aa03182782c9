"""Customer tables (issue 3): customers with tier and group hierarchy, contacts, tier history; instance links.

The customer history is append-only (database triggers, like the audit log): a tier change must stay
provable after the fact because SLA deadlines of open work are re-derived from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from engine.clock import utcnow
from engine.models.core import JSONType
from engine.models.types import timestamp

TIERS = ("A", "B", "C", "D")




class Customer(SQLModel, table=True):
    """A customer (a group or one of its subsidiaries) with its tier and region."""

    __tablename__ = "customer"
    __table_args__ = (
        sa.CheckConstraint("tier IN ('A', 'B', 'C', 'D')", name="ck_customer_tier"),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id", name="ck_customer_not_own_parent"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, max_length=200)
    tier: str = Field(index=True, max_length=1)
    parent_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    region: str | None = Field(default=None, index=True, max_length=100)
    row_version: int = Field(default=1, nullable=False)
    created_by: str = Field(max_length=200)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
    updated_at: datetime = timestamp(nullable=False, default=utcnow)


class CustomerContact(SQLModel, table=True):
    """A person at a customer; the time zone says when e-mails to them are read."""

    __tablename__ = "customer_contact"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    time_zone: str = Field(max_length=64)
    role: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp(nullable=False, default=utcnow)


class CustomerHistory(SQLModel, table=True):
    """Append-only: who created or changed a customer (its tier above all), when, from what to what, why."""

    __tablename__ = "customer_history"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    at: datetime = timestamp(nullable=False)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=40)  # created | updated | tier_changed | contact_added
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class InstanceLink(SQLModel, table=True):
    """One instance started another (a won deal its project); unique per (from, kind): never twice."""

    __tablename__ = "instance_link"
    __table_args__ = (sa.UniqueConstraint("from_instance_id", "kind", name="uq_instance_link_from_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    from_instance_id: int = Field(foreign_key="instance.id", index=True)
    to_instance_id: int = Field(foreign_key="instance.id", index=True)
    kind: str = Field(max_length=40)
    copied: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    created_by: str = Field(max_length=200)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
