"""Conflicts and activity (issue 13 items 5 and 6): the operations projection, the registry's inferred activity,
and the reports over them.

Revision ID: 0017_conflicts_and_activity
Revises: 0016_schedules
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0017_conflicts_and_activity"
down_revision = "0016_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.operations_under_way")
    op.execute("DROP TABLE projections.operations")
    op.execute("DROP VIEW reports.coordination_agents")
    op.execute(
        """
        CREATE VIEW reports.coordination_agents AS
        SELECT r.agent_id, r.state, r.status, r.working_on, r.last_seen_at, r.heartbeats,
               (SELECT count(*) FROM projections.locks AS l WHERE l.holder = r.agent_id) AS locks_held,
               (SELECT count(*) FROM projections.claims AS c
                 WHERE c.holder = r.agent_id AND c.state = 'held') AS claims_held,
               (SELECT count(*) FROM projections.inbox AS i
                 WHERE i.recipient = r.agent_id AND i.acknowledged_at IS NULL) AS unread_messages,
               (SELECT count(*) FROM projections.inbox AS i
                 WHERE i.sender = r.agent_id AND i.kind = 'direct') AS messages_sent,
               (SELECT count(*) FROM projections.chat AS m WHERE m.author = r.agent_id) AS chat_posts,
               r.registered_at, r.reason
          FROM projections.registry AS r
         ORDER BY r.state, r.agent_id
        """
    )
    op.execute(
        "COMMENT ON VIEW reports.coordination_agents IS 'Each coordinating agent: state, status, last heartbeat, "
        "locks and claims held, unread and sent messages.'"
    )
    op.execute("ALTER TABLE projections.registry DROP COLUMN activity, DROP COLUMN last_active_at")
