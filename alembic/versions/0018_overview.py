"""The system overview (issue 13 item 7): reports over the registry and the task queue, in seed 003's terms.

Revision ID: 0018_overview
Revises: 0017_conflicts_and_activity
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0018_overview"
down_revision = "0017_conflicts_and_activity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.system_overview")
    op.execute("DROP VIEW reports.unroutable_tasks")
