"""Decider state saved by key: a head row per decider plus one row per document or agent, so that a batch writes
what it changed, not the whole state.

Revision ID: 0009_decider_rows
Revises: 0008_documents_under_load
Create Date: 2026-12-04
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0009_decider_rows"
down_revision = "0008_documents_under_load"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP FUNCTION agentlog.delete_decider_rows(text, text[])")
    op.execute("DROP TABLE agentlog.decider_rows")
    op.execute("ALTER TABLE agentlog.decider_states DROP COLUMN row_count")
