"""agent_connections: one row per agent — its document, manager, process, status and counters.

Status follows seed 000: connecting (spawn decided, process starting) → active (joined its document) → idle (its
document went idle) → detaching (asked to stop) → disconnected (exited when asked, or its manager went away); error
when the worker exited on its own or kept crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agentlog.domains.agents.events import (
    AgentAbandoned,
    AgentConnected,
    AgentDetachRequested,
    AgentFailed,
    AgentMetricsReported,
    AgentProcessExited,
    AgentProcessStarted,
    AgentSpawnRequested,
    AgentUnresponsive,
    LocationsMarked,
    ManagerStopped,
    TokensSpent,
)
from agentlog.domains.documents.events import DocumentIdled
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))

STATEMENTS: dict[str, str] = {
    "AgentSpawnRequested": "agent_spawn_requested",
    "AgentProcessStarted": "agent_process_started",
    "AgentConnected": "agent_connected",
    "DocumentIdled": "document_idled",
    "AgentDetachRequested": "agent_detach_requested",
    "AgentUnresponsive": "agent_unresponsive",
    "AgentProcessExited": "agent_process_exited",
    "AgentAbandoned": "agent_abandoned",
    "AgentFailed": "agent_failed",
    "ManagerStopped": "manager_stopped",
    "LocationsMarked": "locations_marked",
    "TokensSpent": "tokens_spent",
    "AgentMetricsReported": "agent_metrics_reported",
}
"""Event type → the block of `agent_connections.sql` that applies it."""


def _arguments(item: TypedEvent) -> tuple[Any, ...]:
    at = item.recorded_at
    match item.event:
        case AgentSpawnRequested() as event:
            return (event.agent_id, event.document_id, event.manager_id, event.attempt, event.reason, at)
        case AgentProcessStarted() as event:
            return (event.agent_id, event.pid, at)
        case AgentConnected() as event:
            return (event.agent_id, at)
        case DocumentIdled() as event:
            return (event.document_id, at)
        case AgentDetachRequested() | AgentFailed() | AgentAbandoned() as event:
            return (event.agent_id, event.reason, at)
        case AgentUnresponsive() as event:
            return (event.agent_id, f"missed {event.missed_pongs} pongs ({event.silent_s:.0f} s silent)", at)
        case AgentProcessExited() as event:
            return (event.agent_id, event.expected, event.exit_code, event.reason, at)
        case ManagerStopped() as event:
            return (event.manager_id, f"manager {event.how}: {event.reason}", at)
        case LocationsMarked() as event:
            return (event.agent_id, len(event.places), at)
        case TokensSpent() as event:
            return (event.agent_id, int(event.prompt_tokens) + int(event.completion_tokens), at)
        case AgentMetricsReported() as event:
            return (event.agent_id, event.memory_mb, event.cpu_percent)
    raise AssertionError(f"agent_connections does not handle {item.event_type}")


class AgentConnections:
    name: ClassVar[str] = "agent_connections"
    version: ClassVar[int] = 2
    tables: ClassVar[tuple[str, ...]] = ("agent_connections",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(STATEMENTS)

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        # Agent events are few next to the log's other traffic: one statement per event keeps the rules readable.
        for item in events:
            await connection.execute(QUERIES[STATEMENTS[item.event_type]], *_arguments(item))


projection = AgentConnections()
