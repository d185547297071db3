"""The read side: projection tables and registry, the shadow-and-swap function, report views.

Revision ID: 0002_projections
Revises: 0001_event_log
Create Date: 2026-11-21
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0002_projections"
down_revision = "0001_event_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP SCHEMA reports CASCADE")
    op.execute("DROP SCHEMA projections CASCADE")
    op.execute("DROP FUNCTION agentlog.swap_projection(text, text, text[])")
    op.execute("DROP TABLE agentlog.projections")
    op.execute("ALTER TABLE agentlog.checkpoints DROP COLUMN events_applied")
