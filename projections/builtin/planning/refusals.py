"""tool_refusals: every tool call or write a server refused (`ToolCallRefused`, on the agent's `refusals-<agent_id>`
stream) — which agent, which tool or route, with which arguments, in which session and step, and why — for people
asking "what did an agent try that it may not do" from SQL (`reports.refused_tool_calls`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.domains.planning.events import ToolCallRefused, refusals_stream
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class ToolRefusals:
    name: ClassVar[str] = "tool_refusals"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("tool_refusals",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"ToolCallRefused"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        rows = []
        for item in events:
            event = item.event
            assert isinstance(event, ToolCallRefused)
            if item.stream_id != refusals_stream(event.agent_id):
                continue  # recorded where it was refused: the refused agent's stream
            rows.append({
                "event_id": str(item.event_id), "global_position": item.global_position, "agent_id": event.agent_id,
                "tool": event.tool, "arguments": event.arguments, "session_id": event.session_id,
                "step_id": event.step_id, "reason": event.reason, "refused_at": item.recorded_at,
            })  # fmt: skip
        if rows:
            await connection.execute(QUERIES["refusal_insert"], rows)


projection = ToolRefusals()
