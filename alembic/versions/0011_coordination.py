"""Coordination of agents (issue 12): the registry, chat, inbox, checkpoints, memories, locks and claims
(projection tables and report views; the events are the log's as always).

Revision ID: 0011_coordination
Revises: 0010_log_hardening
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0011_coordination"
down_revision = "0010_log_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.coordination_agents, reports.message_traffic, reports.lock_contention")
    op.execute(
        "DROP TABLE projections.registry, projections.chat, projections.inbox, projections.agent_checkpoints, "
        "projections.memories, projections.locks, projections.claims"
    )
