"""Merge the customers (0002), people (0003) and service (0004) branches into one line again.

Revision ID: 0005
Revises: 0002, 0003, 0004
"""

from __future__ import annotations

revision = "0005"
down_revision = ("0002", "0003", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
