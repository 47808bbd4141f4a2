"""The ledger as created before migrations: calls, holds, kept replies.

Each object is created only if missing, so a database made by that code (which created the same tables
with CREATE ... IF NOT EXISTS) is taken as it is. The definitions are frozen here, not imported from
`leanrank.cost.ledger`, which always describes the newest schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    time = sa.DateTime(timezone=True)
    op.create_table(
        prefix,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", time, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("course", sa.String(200)),
        sa.Column("tenant", sa.String(200)),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("backend", sa.String(500), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("query_tokens", sa.Integer, nullable=False),
        sa.Column("document_tokens", sa.Integer, nullable=False),
        sa.Column("billed_units", sa.Float, nullable=False),
        sa.Column("billed_unit", sa.String(16), nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("cache_hits", sa.Integer, nullable=False),
        sa.Column("count_source", sa.String(16), nullable=False),
        sa.UniqueConstraint("request_id", "stage", name=f"{prefix}_request_stage"),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_holds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", time, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("course", sa.String(200)),
        sa.Column("tenant", sa.String(200)),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.UniqueConstraint("request_id", "stage", name=f"{prefix}_holds_request_stage"),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_replies",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("time", time, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("headers", sa.String(4000), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        if_not_exists=True,
    )
    op.create_index(f"{prefix}_course_time", prefix, ["course", "time"], if_not_exists=True)
    op.create_index(f"{prefix}_replies_time", f"{prefix}_replies", ["time"], if_not_exists=True)
    op.create_index(f"{prefix}_tenant_time", prefix, ["tenant", "time"], if_not_exists=True)
    op.create_index(f"{prefix}_time", prefix, ["time"], if_not_exists=True)


def downgrade(prefix: str) -> None:
    for table in (f"{prefix}_replies", f"{prefix}_holds", prefix):
        op.drop_table(table)
