"""Documents and agents: decider states, document content, the signing secret, their projections and reports.

Revision ID: 0003_documents_and_agents
Revises: 0002_projections
Create Date: 2026-11-21
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0003_documents_and_agents"
down_revision = "0002_projections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.agent_system_stats, reports.documents_now")
    op.execute(
        "DROP TABLE projections.agent_metrics, projections.document_activity, projections.documents, "
        "projections.agent_connections, projections.timers"
    )
    op.execute("DROP TABLE agentlog.document_updates, agentlog.decider_states, agentlog.secrets")
