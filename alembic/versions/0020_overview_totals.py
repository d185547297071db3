"""The overview's agent counts add up (hostile review 14).

Revision ID: 0020_overview_totals
Revises: 0019_idempotency_in_progress
Create Date: 2026-12-03
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0020_overview_totals"
down_revision = "0019_idempotency_in_progress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    # 0018's view, as it was.
    script = (Path(__file__).parent / "0018_overview.sql").read_text()
    view = script[script.index("CREATE VIEW reports.system_overview") :]
    op.execute("DROP VIEW reports.system_overview")
    op.get_bind().connection.dbapi_connection.cursor().execute(view.encode())  # type: ignore[union-attr]
