"""Least privilege: an application role that appends only through the functions, a read-only reporting role.

Revision ID: 0006_roles
Revises: 0005_log_under_operators
Create Date: 2026-11-28
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0006_roles"
down_revision = "0005_log_under_operators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    raise RuntimeError("revoking the roles' privileges would stop every agentlog process; do it by hand")
