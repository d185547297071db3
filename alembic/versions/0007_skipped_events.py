"""Events a handler could not decode are skipped, and the skip is recorded: one malformed event from any writer
cannot stop a handler, and nobody has to guess why a projection lacks it.

Revision ID: 0007_skipped_events
Revises: 0006_roles
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0007_skipped_events"
down_revision = "0006_roles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.skipped_events")
    op.execute("DROP VIEW agentlog.handler_lag")
    op.execute(
        """
        CREATE VIEW agentlog.handler_lag AS
        SELECT c.name, c.global_position, c.transaction_id, c.updated_at,
               (SELECT count(*) FROM agentlog.events AS e
                 WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)) AS events_behind,
               coalesce(extract(epoch FROM now() - (
                   SELECT e.recorded_at FROM agentlog.events AS e
                    WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
                    ORDER BY e.transaction_id, e.global_position LIMIT 1)), 0)::double precision AS seconds_behind
          FROM agentlog.checkpoints AS c
        """
    )
    op.execute("DROP TABLE agentlog.skipped_events")
