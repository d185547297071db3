"""tasks: one row per task — its lifecycle as the tasks domain folds its stream (`domains.tasks.lifecycle`: an
event the lifecycle refuses changes nothing here either), what it is, who holds its current attempt, its result
or error, and when each step happened. Queue depth, per-agent statistics and the overview read it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.tasks.events import (
    TaskAssigned,
    TaskAttemptRefused,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    task_of,
)
from agentlog.domains.tasks.lifecycle import TASK_TIMER_PURPOSES, TERMINAL, TaskLifecycle
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.orchestration.queries import QUERIES


def _new_row(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id, "task_type": "", "priority": 0, "status": "new", "attempt": 0, "agent_id": None,
        "attempts_spent": 0, "max_attempts": 0, "capabilities": [], "depends_on": [], "concurrency_key": None,
        "dedupe_key": None, "payload": {}, "payload_ref": None, "result": None, "last_error": None, "reason": None,
        "refusals": 0, "created_at": None, "assigned_at": None, "started_at": None, "finished_at": None,
        "last_heartbeat_at": None, "updated_at": None, "lifecycle": {},
    }  # fmt: skip


def _is_task_event(item: TypedEvent) -> bool:
    if not item.stream_id.startswith("task-"):
        return False
    event = item.event
    if isinstance(event, TimerScheduled | TimerFired):
        return event.purpose in TASK_TIMER_PURPOSES and event.subject == task_of(item.stream_id)
    return True


class Tasks:
    name: ClassVar[str] = "tasks"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("tasks",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {
            "TaskCreated", "TaskAssigned", "TaskStarted", "TaskHeartbeat", "TaskCompleted", "TaskFailed",
            "TaskSnoozed", "TaskRetryScheduled", "TaskDeadLettered", "TaskRequeued", "TaskCancelled",
            "TaskAttemptRefused", "TimerScheduled", "TimerFired",
        }
    )  # fmt: skip

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        mine = [item for item in events if _is_task_event(item)]
        if not mine:
            return
        task_ids = sorted({task_of(item.stream_id) for item in mine})
        rows = {row["task_id"]: dict(row) for row in await connection.fetch(QUERIES["task_rows"], task_ids)}
        lifecycles = {task_id: TaskLifecycle.model_validate(row["lifecycle"]) for task_id, row in rows.items()}
        touched: set[str] = set()
        for item in mine:
            task_id = task_of(item.stream_id)
            row = rows.setdefault(task_id, _new_row(task_id))
            task = lifecycles.setdefault(task_id, TaskLifecycle())
            event = item.event
            if isinstance(event, TaskAttemptRefused):
                row["refusals"] += 1
                row["updated_at"] = item.recorded_at
                touched.add(task_id)
                continue
            was_terminal = task.terminal
            if not task.fold(event):
                continue
            touched.add(task_id)
            row["updated_at"] = item.recorded_at
            match event:
                case TaskCreated():
                    row.update(
                        task_type=event.task_type, priority=event.priority, max_attempts=event.max_attempts,
                        capabilities=list(event.capabilities), depends_on=list(event.depends_on),
                        concurrency_key=event.concurrency_key, dedupe_key=event.dedupe_key, payload=event.payload,
                        payload_ref=event.payload_ref, created_at=item.recorded_at,
                    )  # fmt: skip
                case TaskAssigned():
                    row.update(assigned_at=item.recorded_at, started_at=None, last_heartbeat_at=None)
                case TaskStarted():
                    row.update(started_at=item.recorded_at, last_heartbeat_at=item.recorded_at)
                case TaskHeartbeat():
                    row["last_heartbeat_at"] = item.recorded_at
                case TaskCompleted():
                    row["result"] = event.result
                case TaskFailed():
                    row["last_error"] = event.error
            if task.terminal and not was_terminal:
                row["finished_at"] = item.recorded_at
            elif not task.terminal:
                row["finished_at"] = None
            row.update(
                status=task.status, attempt=task.attempt, agent_id=task.agent_id,
                attempts_spent=task.attempts_spent, reason=task.reason or None,
            )  # fmt: skip
        for task_id in touched:
            stored = lifecycles[task_id]
            rows[task_id]["lifecycle"] = stored.model_dump(mode="json", exclude={"spec": {"payload"}})
        if touched:
            await connection.execute(QUERIES["task_upsert"], [rows[task_id] for task_id in sorted(touched)])


TERMINAL_STATUSES = sorted(TERMINAL)
projection = Tasks()
