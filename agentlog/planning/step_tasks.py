"""An executor's step as a task of the queue: created for the step, pulled by the executor (its capability is the
executor's own, so no other agent takes it), started, and completed with the step's result or failed with why —
so the queue, its statistics and `GET /tasks` show the plan's work like any other agent's.

Every command is made through the API by the runtime's admin, acting for the executor, and each is safe to make
again after a crash: the task's id derives from the plan and the step, a create of a task that exists is taken
as done, and the current attempt is read from the task's own stream (`GET /tasks/{id}/assignment`) before it is
claimed, started or ended.
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog

from agentlog.client import AgentlogClient, ApiError
from agentlog.domains.planning.step_tasks import STEP_TASK_TYPE

log = structlog.get_logger("agentlog.planning")

STEP_TIMEOUT_S = 86_400.0
"""A step's task is not timed out by the queue: the runtime ends it, and a step ends with its plan."""
CLAIM_WAIT_S = 60.0
"""How long the executor asks for its step's task before the step fails (the dispatcher is down)."""


def step_task_id(plan_id: str, step_id: str) -> str:
    return "step-" + hashlib.sha256(f"{plan_id}/{step_id}".encode()).hexdigest()[:24]


def executor_capability(agent_id: str) -> str:
    return f"executor:{agent_id}"


class StepTaskError(Exception):
    """The step's task could not be given to its executor; the message says why."""


class StepTasks:
    def __init__(self, admin: AgentlogClient) -> None:
        self.admin = admin

    async def begin(self, agent_id: str, session_id: str, plan_id: str, step_id: str, title: str) -> str:
        """The step's task, created if need be, assigned to its executor and started; its id."""
        task_id = step_task_id(plan_id, step_id)
        try:
            await self.admin.keyed(f"{task_id}/create").create_task(
                STEP_TASK_TYPE, task_id=task_id, priority=5, capabilities=[executor_capability(agent_id)],
                payload={"session_id": session_id, "plan_id": plan_id, "step_id": step_id, "title": title[:500]},
                max_attempts=1, execution_timeout_s=STEP_TIMEOUT_S, heartbeat_interval_s=STEP_TIMEOUT_S,
            )  # fmt: skip
        except ApiError as refused:
            if refused.status != 409:  # 409: it exists (a runtime before this one made it)
                raise
        attempt = await self._attempt(task_id, agent_id)
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + CLAIM_WAIT_S, 0.1
        while attempt is None and loop.time() < deadline:
            answer = await self.admin.claim_task(task_types=[STEP_TASK_TYPE], wait_s=5, agent_id=agent_id)
            if answer.assignment is not None and answer.assignment.task_id != task_id:
                # Only a step's own task asks for its executor's capability (the API holds every plan-step task
                # to one), so this cannot be another's; say so rather than hold it.
                raise StepTaskError(f"executor {agent_id} was given task {answer.assignment.task_id}, not its step's")
            if answer.assignment is not None:
                attempt = answer.assignment.attempt
            elif answer.declined:  # the dispatcher has not seen the executor's registration yet: back off
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            attempt = attempt if attempt is not None else await self._attempt(task_id, agent_id)
        if attempt is None:
            raise StepTaskError(f"task {task_id} was not assigned to executor {agent_id} within {CLAIM_WAIT_S:g} s "
                                "(is the dispatcher up?)")  # fmt: skip
        try:
            await self.admin.start_task(task_id, attempt, agent_id=agent_id)
        except ApiError as refused:
            if refused.status != 409:  # 409: started already
                raise
        return task_id

    async def end(self, agent_id: str, plan_id: str, step_id: str, *, result: str | None = None,
                  error: str | None = None) -> None:  # fmt: skip
        """Complete the step's task with its result, or fail it with `error`; nothing when it holds no attempt of
        the executor's (never begun, or ended already)."""
        task_id = step_task_id(plan_id, step_id)
        attempt = await self._attempt(task_id, agent_id)
        if attempt is None:
            return
        key = self.admin.keyed(f"{task_id}/{attempt}/end")
        try:
            if error is None:
                await key.complete_task(task_id, attempt, result={"text": (result or "")[:8_000]}, agent_id=agent_id)
            else:
                await key.fail_task(task_id, attempt, error[:2_000] or "failed", retryable=False, agent_id=agent_id)
        except ApiError as refused:
            log.warning("planning.step_task_not_ended", task_id=task_id, status=refused.status, code=refused.code)

    async def _attempt(self, task_id: str, agent_id: str) -> int | None:
        """The attempt of the task the executor holds now (assigned or running), None if it holds none."""
        try:
            held = await self.admin.assignment(task_id)
        except ApiError:
            return None
        return held.attempt if held.agent_id == agent_id else None
