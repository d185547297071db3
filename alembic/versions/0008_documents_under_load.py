"""Documents under load: updates stored in batches and followed across document servers, tokens that can be taken
back.

Revision ID: 0008_documents_under_load
Revises: 0007_skipped_events
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0008_documents_under_load"
down_revision = "0007_skipped_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP TABLE projections.token_revocations")
    op.execute("DROP INDEX agentlog.document_updates_order_idx")
    op.execute("ALTER TABLE agentlog.document_updates DROP COLUMN server_id, DROP COLUMN transaction_id")
