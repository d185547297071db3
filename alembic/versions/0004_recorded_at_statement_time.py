"""Events are stamped with the time of the statement that appended them, not of their transaction's start.

Handler batches run in transactions opened ahead of time (the runner begins the next batch as it commits the
last), so `now()` — the transaction's start — could be up to a poll interval before the append. Timers are due at
`recorded_at` plus their delay, and fired early by that much; a decision could look older than its cause.

Revision ID: 0004_recorded_at_statement_time
Revises: 0003_documents_and_agents
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0004_recorded_at_statement_time"
down_revision = "0003_documents_and_agents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE agentlog.events ALTER COLUMN recorded_at SET DEFAULT statement_timestamp()")


def downgrade() -> None:
    op.execute("ALTER TABLE agentlog.events ALTER COLUMN recorded_at SET DEFAULT now()")
