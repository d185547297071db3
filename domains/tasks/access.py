"""Which agent may do what to a task it did not get from the dispatcher: one rule for the API's routes and feed.

People and admins see and cancel every task. An agent's token is one of many working on a shared queue, and a
task's payload and result may hold what only the two parties to it should see: the agent that created it (by kind
as well as name — an agent may be named as a person is) and the agent its last attempt was given to.
"""

from __future__ import annotations

WITHHELD = ("payload", "payload_ref", "result", "last_error", "reason")
"""What an agent reading another's task does not get (a dead letter's reason quotes its last error)."""


def created_by_agent(agent_id: str, created_by: str, created_by_kind: str) -> bool:
    """The agent created the task itself (a person or schedule of the same name did not make it its own)."""
    return created_by_kind == "agent" and created_by == agent_id


def agent_reads_all_of(agent_id: str, created_by: str, created_by_kind: str, assigned_to: str | None) -> bool:
    """The agent sees the task's payload and result: it created the task, or holds (or last held) its attempt."""
    return assigned_to == agent_id or created_by_agent(agent_id, created_by, created_by_kind)
