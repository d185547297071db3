"""Agent programs (issue 13 item 2): the programs projection and the report view over it.

Revision ID: 0021_programs
Revises: 0020_overview_totals
Create Date: 2026-12-03
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0021_programs"
down_revision = "0020_overview_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.programs")
    op.execute("DROP TABLE projections.programs")
