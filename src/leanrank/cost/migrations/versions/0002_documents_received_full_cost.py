"""Calls gain two nullable columns, `documents_received` (Integer) and `full_cost_usd` (Float), for the
gateway's savings accounting; calls recorded before keep NULL there.

A column already there (a ledger created by a build that had it before this revision) is kept.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = {"documents_received": sa.Integer, "full_cost_usd": sa.Float}


def upgrade(prefix: str) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(prefix)}
    for name, kind in _COLUMNS.items():
        if name not in present:
            op.add_column(prefix, sa.Column(name, kind, nullable=True))


def downgrade(prefix: str) -> None:
    for name in _COLUMNS:
        op.drop_column(prefix, name)
