"""The event log: events table, append function, immutability, checkpoints, lag views.

Revision ID: 0001_event_log
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from pathlib import Path

from alembic import op


def run_sql_file(path: Path) -> None:
    """Run a plain SQL script as it is: no bind-parameter parsing of ':name' or '%' by SQLAlchemy or psycopg."""
    cursor = op.get_bind().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(path.read_text().encode())

revision = "0001_event_log"
down_revision = None
branch_labels = ("agentlog",)  # plugins' migrations are branches of their own beside this one
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise RuntimeError("the event log is never dropped by a migration; drop the agentlog schema by hand")
