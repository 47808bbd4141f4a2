"""A running total of known cost per `(scope, name, UTC day)`, `<prefix>_spend`, kept by every record's
transaction, so a budget reads at most 31 rows for a month instead of summing every call of the month.

The totals of the calls already recorded are computed here once, from the calls table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    name = f"{prefix}_spend"
    bind = op.get_bind()
    if sa.inspect(bind).has_table(name):
        return
    spend = op.create_table(
        name,
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", "day", name=f"{name}_key"),
    )
    calls = sa.table(
        prefix, sa.column("time"), sa.column("course"), sa.column("tenant"), sa.column("cost_usd")
    )
    if bind.dialect.name == "postgresql":
        day = sa.func.to_char(sa.func.timezone("UTC", calls.c.time), "YYYY-MM-DD")
    else:
        day = sa.func.strftime("%Y-%m-%d", calls.c.time)  # SQLite keeps naive UTC times
    for scope in ("course", "tenant"):
        who = calls.c[scope]
        totals = (
            sa.select(sa.literal(scope), who, day.label("day"), sa.func.sum(calls.c.cost_usd))
            .where(who.is_not(None), calls.c.cost_usd.is_not(None))
            .group_by(who, "day")
        )
        op.execute(spend.insert().from_select(["scope", "name", "day", "cost_usd"], totals))


def downgrade(prefix: str) -> None:
    op.drop_table(f"{prefix}_spend")
