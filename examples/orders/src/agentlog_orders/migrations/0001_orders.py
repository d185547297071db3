"""The orders schema: the handler's tables, the projection's table and a daily report.

Revision ID: orders_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "orders_0001"
down_revision = None
branch_labels = ("orders",)  # a branch of its own, beside agentlog's
depends_on = "0006_roles"  # the roles it grants to; agentlog's revisions up to there run first


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.order_totals_daily")
    op.execute("DROP TABLE projections.orders")
    op.execute("DROP SCHEMA orders CASCADE")
