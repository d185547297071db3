"""Orchestration (issue 13): the tasks and budgets projections and the queue reports over them.

Revision ID: 0015_orchestration
Revises: 0014_presence_in_projection
Create Date: 2026-12-02
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0015_orchestration"
down_revision = "0014_presence_in_projection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.task_queue, reports.task_agents")
    op.execute("DROP TABLE projections.tasks, projections.budgets")
