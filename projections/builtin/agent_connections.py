"""agent_connections: one row per agent — its document, manager, process, status and counters.

Status follows seed 000: connecting (spawn decided, process starting) → active (joined its document) → idle (its
document went idle) → detaching (asked to stop) → disconnected (exited when asked, or its manager went away); error
when the worker exited on its own or kept crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
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

ENDED = "('disconnected', 'error')"

STATEMENTS: dict[str, str] = {
    "AgentSpawnRequested": """
        INSERT INTO agent_connections (agent_id, document_id, manager_id, status, attempt, spawn_reason,
                                       requested_at, last_activity_at)
        VALUES ($1, $2, $3, 'connecting', $4, $5, $6, $6)
        ON CONFLICT (agent_id) DO NOTHING""",
    "AgentProcessStarted": """
        UPDATE agent_connections SET agent_pid = $2, last_activity_at = $3 WHERE agent_id = $1""",
    "AgentConnected": f"""
        UPDATE agent_connections SET status = 'active', connected_at = $2, last_activity_at = $2
         WHERE agent_id = $1 AND status NOT IN ('idle', 'detaching', {ENDED[1:-1]})""",
    "DocumentIdled": """
        UPDATE agent_connections SET status = 'idle', last_activity_at = $2
         WHERE document_id = $1 AND status IN ('connecting', 'active')""",
    "AgentDetachRequested": f"""
        UPDATE agent_connections SET status = 'detaching', end_reason = $2, last_activity_at = $3
         WHERE agent_id = $1 AND status NOT IN {ENDED}""",
    "AgentUnresponsive": f"""
        UPDATE agent_connections SET end_reason = $2, last_activity_at = $3
         WHERE agent_id = $1 AND status NOT IN {ENDED}""",
    "AgentProcessExited": f"""
        UPDATE agent_connections
           SET status = CASE WHEN $2 THEN 'disconnected' ELSE 'error' END, exit_code = $3,
               end_reason = CASE WHEN $2 THEN coalesce(end_reason, $4) ELSE $4 END, ended_at = $5,
               last_activity_at = $5
         WHERE agent_id = $1 AND status NOT IN {ENDED}""",
    "AgentAbandoned": f"""
        UPDATE agent_connections SET status = 'error', end_reason = $2, ended_at = $3, last_activity_at = $3
         WHERE agent_id = $1 AND status NOT IN {ENDED}""",
    "AgentFailed": """
        UPDATE agent_connections SET status = 'error', end_reason = $2, last_activity_at = $3 WHERE agent_id = $1""",
    "ManagerStopped": f"""
        UPDATE agent_connections SET status = 'disconnected', end_reason = $2, ended_at = $3, last_activity_at = $3
         WHERE manager_id = $1 AND status NOT IN {ENDED}""",
    "LocationsMarked": """
        UPDATE agent_connections SET locations_marked_count = locations_marked_count + $2, last_activity_at = $3
         WHERE agent_id = $1""",
    "TokensSpent": """
        UPDATE agent_connections SET llm_calls_count = llm_calls_count + 1, tokens_spent = tokens_spent + $2,
                                     last_activity_at = $3
         WHERE agent_id = $1""",
    "AgentMetricsReported": """
        UPDATE agent_connections SET memory_mb = $2, cpu_percent = $3 WHERE agent_id = $1""",
}


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
            await connection.execute(STATEMENTS[item.event_type], *_arguments(item))


projection = AgentConnections()
