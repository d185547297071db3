"""The log under operators: a transaction epoch that survives restores, a stream's order without refusals,
every append through a function, repeated ids and oversized events refused, payloads checked on the SQL path,
the barrier's holders (prepared transactions included).

Revision ID: 0005_log_under_operators
Revises: 0004_recorded_at_statement_time
Create Date: 2026-11-28
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0005_log_under_operators"
down_revision = "0004_recorded_at_statement_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    raise RuntimeError("the transaction epoch of a log is never removed: events recorded since depend on it")
