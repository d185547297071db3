"""The document_activity projection folds the documents domain's presence rule: its state in two tables.

Revision ID: 0014_presence_in_projection
Revises: 0013_api_idempotency
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0014_presence_in_projection"
down_revision = "0013_api_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP TABLE projections.document_connections, projections.document_servers")
