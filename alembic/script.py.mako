"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    # The SQL lives beside this file (same name, .sql) and runs as it is, through the driver: SQLAlchemy would
    # read ":name" and psycopg "%" as parameters. Write it there; see CONTRIBUTING.md, "A migration".
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    raise RuntimeError("say here how to undo ${up_revision} by hand, or write its downgrade")
