"""agent_connections: one row per agent — its document, manager, process, status and counters.

Status follows seed 000: connecting (spawn decided, process starting) → active (joined its document) → idle (its
document went idle) → detaching (asked to stop) → disconnected (exited when asked, or its manager went away); error
when the worker exited on its own or kept crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from eventstore import RecordedEvent
from eventstore.postgres.connections import Connection

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


def _arguments(event: RecordedEvent) -> tuple[Any, ...]:
    data, at = event.data, event.recorded_at
    match event.event_type:
        case "AgentSpawnRequested":
            return (data["agent_id"], data["document_id"], data["manager_id"], data["attempt"], data["reason"], at)
        case "AgentProcessStarted":
            return (data["agent_id"], data["pid"], at)
        case "AgentConnected":
            return (data["agent_id"], at)
        case "DocumentIdled":
            return (data["document_id"], at)
        case "AgentDetachRequested" | "AgentFailed" | "AgentAbandoned":
            return (data["agent_id"], data["reason"], at)
        case "AgentUnresponsive":
            return (data["agent_id"], f"missed {data['missed_pongs']} pongs ({data['silent_s']:.0f} s silent)", at)
        case "AgentProcessExited":
            return (data["agent_id"], data["expected"], data["exit_code"], data["reason"], at)
        case "ManagerStopped":
            return (data["manager_id"], f"manager {data['how']}: {data['reason']}", at)
        case "LocationsMarked":
            return (data["agent_id"], len(data["places"]), at)
        case "TokensSpent":
            return (data["agent_id"], int(data["prompt_tokens"]) + int(data["completion_tokens"]), at)
        case "AgentMetricsReported":
            return (data["agent_id"], data["memory_mb"], data["cpu_percent"])
    raise AssertionError(f"agent_connections does not handle {event.event_type}")


class AgentConnections:
    name: ClassVar[str] = "agent_connections"
    version: ClassVar[int] = 2
    tables: ClassVar[tuple[str, ...]] = ("agent_connections",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(STATEMENTS)

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        # Agent events are few next to the log's other traffic: one statement per event keeps the rules readable.
        for event in events:
            await connection.execute(STATEMENTS[event.event_type], *_arguments(event))


projection = AgentConnections()
