"""Idempotency-Key: a request under way holds its key (hostile review 5).

Revision ID: 0019_idempotency_in_progress
Revises: 0018_overview
Create Date: 2026-12-03
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0019_idempotency_in_progress"
down_revision = "0018_overview"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DELETE FROM agentlog.api_idempotency WHERE status_code IS NULL")
    op.execute("ALTER TABLE agentlog.api_idempotency DROP CONSTRAINT api_idempotency_answer_whole")
    op.execute("ALTER TABLE agentlog.api_idempotency ALTER COLUMN body SET NOT NULL")
    op.execute("ALTER TABLE agentlog.api_idempotency ALTER COLUMN status_code SET NOT NULL")
