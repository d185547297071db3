"""Projection rows as the API's answer models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from pydantic import BaseModel

from agentlog.api.auth import Caller
from agentlog.api.commands import BudgetFold, TaskFold
from agentlog.client import models
from agentlog.domains.coordination.claims import Claim as ClaimState
from agentlog.domains.coordination.liveness import RegistryEntry
from agentlog.domains.coordination.locks import LockState
from agentlog.domains.tasks.access import WITHHELD, agent_reads_all_of

Row = Mapping[str, Any] | asyncpg.Record


def _pick(row: Row, model: type[BaseModel]) -> dict[str, Any]:
    keys = set(row.keys())
    return {name: row[name] for name in model.model_fields if name in keys}


def agent(row: Row) -> models.Agent:
    return models.Agent(**_pick(row, models.Agent), stream_version=row["version"])


def agent_of_entry(entry: RegistryEntry) -> models.Agent:
    state = "registered" if entry.state in ("unknown", "registered") else entry.state
    return models.Agent(
        agent_id=entry.agent_id, name=entry.name, state=state, status=entry.status, working_on=entry.working_on,
        capabilities=entry.capabilities, metadata=entry.metadata, heartbeat_timeout_s=entry.heartbeat_timeout_s,
        reason=entry.reason, stream_version=entry.version, activity=entry.activity,
    )  # fmt: skip


def chat(row: Row) -> models.ChatMessage:
    return models.ChatMessage(**_pick(row, models.ChatMessage))


def inbox(row: Row) -> models.InboxMessage:
    return models.InboxMessage(**_pick(row, models.InboxMessage))


def checkpoint(row: Row) -> models.Checkpoint:
    return models.Checkpoint(agent_id=row["agent_id"], stream_version=row["version"], summary=row["summary"],
                             state=row["state"], saved_at=row["saved_at"])  # fmt: skip


def memory(row: Row) -> models.Memory:
    return models.Memory(**_pick(row, models.Memory))


def lock_row(row: Row) -> models.Lock:
    return models.Lock(**_pick(row, models.Lock))


def lock_state(resource: str, state: LockState) -> models.Lock:
    grant = state.grant
    return models.Lock(
        resource=resource, holder=None if grant is None else grant.holder,
        fencing_token=None if grant is None else grant.fencing_token, last_fencing_token=state.last_fencing_token,
        ttl_s=None if grant is None else grant.ttl_s, reason=None if grant is None else grant.reason,
        stream_version=state.version,
    )  # fmt: skip


def claim_row(row: Row) -> models.Claim:
    return models.Claim(**_pick(row, models.Claim))


def claim_state(claim: ClaimState) -> models.Claim:
    return models.Claim(**claim.model_dump())


def task(row: Row, reader: Caller | None = None) -> models.Task:
    """The task as `reader` may see it: an agent reading a task neither created by it nor given to it gets it
    without its payload and result (`domains.tasks.access`)."""
    fields = _pick(row, models.Task)
    if reader is None or reader.kind != "agent":
        return models.Task(**fields)
    spec = (row["lifecycle"] or {}).get("spec") or {}
    creator = (str(spec.get("created_by", "")), str(spec.get("created_by_kind", "")))
    if agent_reads_all_of(reader.name, *creator, assigned_to=row["agent_id"]):
        return models.Task(**fields)
    hidden: dict[str, Any] = {"payload": {}, "payload_ref": None, "result": None, "last_error": None, "reason": None}
    return models.Task(**{**fields, **hidden, "withheld": list(WITHHELD)})


def task_state(fold: TaskFold) -> models.TaskState:
    task, spec = fold.task, fold.task.spec
    return models.TaskState(
        task_id=task.task_id, task_type="" if spec is None else spec.task_type,
        priority=0 if spec is None else spec.priority, status=task.status, attempt=task.attempt,
        agent_id=task.agent_id, attempts_spent=task.attempts_spent,
        max_attempts=0 if spec is None else spec.max_attempts,
        reason=task.reason, last_error=task.last_error, stream_version=fold.version,
    )  # fmt: skip


def budget(row: Row) -> models.Budget:
    return models.Budget(**_pick(row, models.Budget))


def budget_state(fold: BudgetFold, period: str) -> models.Budget:
    """The budget as its stream folds, with what is left in `period` (the period now)."""
    ledger = fold.ledger
    current = period <= ledger.period
    return models.Budget(
        budget_id=ledger.budget_id, limit_tokens=ledger.limit_tokens, reset_hour=ledger.reset_hour,
        time_zone=ledger.time_zone, period=max(period, ledger.period), settled_tokens=ledger.settled if current else 0,
        reserved_tokens=ledger.reserved, open_reservations=len(ledger.open), remaining_tokens=ledger.remaining(period),
        warned=sorted(ledger.warned) if current else [], unbudgeted_tokens=ledger.unbudgeted if current else 0,
        stream_version=fold.version,
    )  # fmt: skip
