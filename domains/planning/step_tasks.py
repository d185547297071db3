"""The rule of a plan step's task in the queue (its home: the planning domain, beside the sessions it serves)."""

from __future__ import annotations

STEP_TASK_TYPE = "plan-step"


def check_step_task(task_type: str, capabilities: list[str]) -> str | None:
    """Why a task may not be created as it is, when it is a step's: a `plan-step` task asks for exactly one
    capability, an executor's own, so that it reaches that executor only and no executor is given another's."""
    if task_type != STEP_TASK_TYPE:
        return None
    if len(capabilities) != 1 or not capabilities[0].startswith("executor:"):
        return f"a {STEP_TASK_TYPE} task asks for exactly one capability, `executor:<agent id>`"
    return None
