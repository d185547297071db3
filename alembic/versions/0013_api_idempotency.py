"""The API's Idempotency-Key answers (issue 12).

Revision ID: 0013_api_idempotency
Revises: 0012_report_descriptions
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0013_api_idempotency"
down_revision = "0012_report_descriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP TABLE agentlog.api_idempotency")
