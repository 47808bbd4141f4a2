"""Holds gain a nullable column `expires` (timezone-aware DateTime): when the hold's call is over for sure, by
the deadline of the process that wrote it, so processes with different deadlines sharing one ledger each have
their own holds honoured, and a hold left by a killed process frees its request id once its own call's
deadline has passed rather than after a fixed hour.

Holds written before this revision, or by an older leanrank still running, keep NULL there: they expire
`HOLD_TTL` after their time, as before.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    op.add_column(f"{prefix}_holds", sa.Column("expires", sa.DateTime(timezone=True), nullable=True))


def downgrade(prefix: str) -> None:
    op.drop_column(f"{prefix}_holds", "expires")
