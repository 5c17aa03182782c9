"""Merge the SLA (0006), outbox (0007) and auth (0008) branches into one line again.

Revision ID: 0009
Revises: 0006, 0007, 0008
"""

from __future__ import annotations

revision = "0009"
down_revision = ("0006", "0007", "0008")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
