"""Planner sessions (seed 004): the content store, the planning and tool_refusals projections, and their reports.

Revision ID: 0022_planning
Revises: 0021_programs
Create Date: 2026-12-03
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0022_planning"
down_revision = "0021_programs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The script as it is, through the driver: SQLAlchemy would read ":name" and psycopg "%" as parameters.
    op.get_bind().connection.dbapi_connection.cursor().execute(Path(__file__).with_suffix(".sql").read_bytes())  # type: ignore[union-attr]


def downgrade() -> None:
    op.execute("DROP VIEW reports.session_costs, reports.plan_costs, reports.tool_call_counts, "
               "reports.refused_tool_calls")  # fmt: skip
    op.execute("DROP TABLE projections.planning_sessions, projections.planning_turns, projections.planning_plans, "
               "projections.planning_steps, projections.planning_messages, projections.planning_executions, "
               "projections.tool_refusals")  # fmt: skip
    op.execute("DROP TABLE agentlog.contents")
