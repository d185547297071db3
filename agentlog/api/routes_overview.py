"""The fleet at a glance (seed 003): the system overview, and each agent's task statistics, from the reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from agentlog.api.errors import not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Reader, Svc
from agentlog.client import models
from agentlog.domains.coordination.names import AGENT_ID_PATTERN

router = APIRouter(tags=["overview"])
UNROUTABLE_SHOWN = 100


@router.get("/overview", response_model=models.Overview, response_model_by_alias=True)
async def overview(services: Svc, who: Reader) -> models.Overview:
    """Agents by state and activity, tasks by where they are, agents by type, and the queued tasks no registered
    agent has the capabilities for (the first hundred)."""
    pool = services.store.pool
    row = await pool.fetchrow(QUERIES["overview"])
    assert row is not None  # an aggregate: always one row
    return models.Overview(
        **dict(row),
        agents_by_type={r["type"]: r["agents"] for r in await pool.fetch(QUERIES["agents_by_type"])},
        unroutable=[models.UnroutableTask(**dict(r)) for r in await pool.fetch(QUERIES["unroutable_tasks"],
                                                                                 UNROUTABLE_SHOWN)],
    )  # fmt: skip


@router.get("/agents/{agent_id}/statistics", response_model=models.TaskStatistics)
async def statistics(
    agent_id: Annotated[str, Path(pattern=AGENT_ID_PATTERN)], services: Svc, who: Reader
) -> models.TaskStatistics:
    """The agent's tasks: total, completed, failed, active, and the average time from start to completion."""
    if await services.store.pool.fetchrow(QUERIES["agent"], agent_id) is None:
        raise not_found(f"no agent {agent_id}")
    row = await services.store.pool.fetchrow(QUERIES["task_statistics"], agent_id)
    if row is None:
        return models.TaskStatistics(total_tasks=0, completed_tasks=0, failed_tasks=0, active_tasks=0,
                                     avg_execution_time_ms=None)  # fmt: skip
    average = row["average_execution_s"]
    return models.TaskStatistics(
        total_tasks=row["total"], completed_tasks=row["completed"], failed_tasks=row["failed"],
        active_tasks=row["active"], avg_execution_time_ms=None if average is None else round(float(average) * 1000),
    )  # fmt: skip
