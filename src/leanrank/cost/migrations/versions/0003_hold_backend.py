"""Holds gain two nullable columns, `backend` (String) and `documents` (Integer): what a hold's call was, so a
hold whose process died mid-call becomes a record of a call its provider may have billed, not nothing.

Holds written before this revision keep NULL there (a free call, or one recorded before the change).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {"backend": sa.String(200), "documents": sa.Integer()}


def upgrade(prefix: str) -> None:
    table = f"{prefix}_holds"
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for name, kind in _COLUMNS.items():
        if name not in present:
            op.add_column(table, sa.Column(name, kind, nullable=True))


def downgrade(prefix: str) -> None:
    for name in _COLUMNS:
        op.drop_column(f"{prefix}_holds", name)
