"""agent_metrics: the figures every worker reports (memory, CPU, LLM calls, places marked, latencies)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))

FIELDS = ("agent_id", "document_id", "memory_mb", "cpu_percent", "llm_calls", "locations_marked",
          "websocket_latency_ms", "llm_response_time_ms")


class AgentMetrics:
    name: ClassVar[str] = "agent_metrics"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("agent_metrics",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"AgentMetricsReported"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        rows = [
            (item.global_position, *(getattr(item.event, name) for name in FIELDS), item.recorded_at)
            for item in events
        ]
        if rows:
            await connection.execute(QUERIES["insert_metrics"], *map(list, zip(*rows, strict=True)))


projection = AgentMetrics()
