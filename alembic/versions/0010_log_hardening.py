"""The log after a hostile review: DDL functions confined to projections, payloads every reader can read, the
one-statement appends checked as the others, known stream versions verified, a restore into a copy of the same
cluster sealed too, a rewound checkpoint told apart from a broken order, the SQL path's schema version defaulting
to the newest.

Revision ID: 0010_log_hardening
Revises: 0009_decider_rows
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0010_log_hardening"
down_revision = "0009_decider_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    raise RuntimeError("the hardened append and DDL functions are not taken back by a downgrade; undo them by hand")
