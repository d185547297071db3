"""Schedules (issue 13 item 3): the schedules projection and the report view over it.

Revision ID: 0016_schedules
Revises: 0015_orchestration
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0016_schedules"
down_revision = "0015_orchestration"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.schedules")
    op.execute("DROP TABLE projections.schedules")
