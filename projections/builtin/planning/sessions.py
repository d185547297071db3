"""planning: planner sessions as people and reports read them — one row per session (`planning_sessions`), per
request (`planning_turns`), per plan (`planning_plans`) and its steps (`planning_steps`), per transcript message
(`planning_messages`: the request, every model answer and every tool answer, in the log's order), and per agent's
thread in a turn (`planning_executions`: its model, calls, tokens and time). The rules are the session's fold
(`domains.planning.session`, in `rows`); large texts stay in `agentlog.contents`, named by `content_ref`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.domains.planning.events import PLANNING_TYPES
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries
from agentlog.projections.builtin.planning.rows import Keys, SessionRows, keys_of, on_its_session

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class Planning:
    name: ClassVar[str] = "planning"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = (
        "planning_sessions", "planning_turns", "planning_plans", "planning_steps", "planning_messages",
        "planning_executions",
    )  # fmt: skip
    event_types: ClassVar[frozenset[str] | None] = PLANNING_TYPES

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        mine = [item for item in events if on_its_session(item)]
        if not mine:
            return
        rows = await _load(connection, keys_of(mine))
        for item in mine:
            rows.evolve(item)
        changed = rows.changed()
        for table, query in (("sessions", "session_upsert"), ("turns", "turn_upsert"), ("plans", "plan_upsert"),
                             ("steps", "step_upsert"), ("executions", "execution_upsert")):  # fmt: skip
            if changed[table]:
                await connection.execute(QUERIES[query], changed[table])
        if rows.messages:
            await connection.execute(QUERIES["message_insert"], rows.messages)


async def _load(connection: Connection, keys: Keys) -> SessionRows:
    """The rows the batch's events may touch, as stored."""
    rows = SessionRows()
    for row in await connection.fetch(QUERIES["session_rows"], keys.session_ids):
        rows.sessions[row["session_id"]] = dict(row)
    if keys.turns:
        for row in await connection.fetch(QUERIES["turn_rows"], *_columns(keys.turns, 2)):
            rows.turns[row["session_id"], row["turn_id"]] = dict(row)
    if keys.plan_ids:
        for row in await connection.fetch(QUERIES["plan_rows"], keys.plan_ids):
            rows.plans[row["plan_id"]] = dict(row)
    if keys.steps:
        for row in await connection.fetch(QUERIES["step_rows"], *_columns(keys.steps, 2)):
            rows.steps[row["plan_id"], row["step_id"]] = dict(row)
    if keys.executions:
        for row in await connection.fetch(QUERIES["execution_rows"], *_columns(keys.executions, 4)):
            rows.executions[row["session_id"], row["turn_id"], row["thread"], row["agent_id"]] = dict(row)
    return rows


def _columns(keys: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    """Keys as one array per column, for `unnest`."""
    return [[key[column] for key in keys] for column in range(width)]


projection = Planning()
