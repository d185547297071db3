"""Every report view says what it is: `agentlog report` lists a view's comment as its description.

Revision ID: 0012_report_descriptions
Revises: 0011_coordination
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0012_report_descriptions"
down_revision = "0011_coordination"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("COMMENT ON VIEW reports.agent_system_stats IS NULL")
    op.execute("COMMENT ON VIEW reports.documents_now IS NULL")
