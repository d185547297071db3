"""The API's write side: each command folds its entity's stream with the domain's rule, decides, and appends at
exactly the version it folded (`eventstore.folds`). Two commands that decided from the same version cannot both
append: the loser folds again and decides anew (a lock it saw free is now held: 409). Nothing is appended for a
refused command.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence

import orjson
from pydantic import BaseModel, Field

from agentlog.api.reads import QUERIES
from agentlog.domains.coordination import claims as claim_rules
from agentlog.domains.coordination.claims import ClaimsState
from agentlog.domains.coordination.errors import Conflict, HeldError, NotFoundError
from agentlog.domains.coordination.liveness import RegistryEntry
from agentlog.domains.coordination.locks import LockState
from agentlog.domains.coordination.names import (
    CLAIMS_STREAM,
    check_agent_id,
    lock_stream,
    member_stream,
)
from agentlog.domains.operations.conflicts import OperationsState
from agentlog.domains.programs.lifecycle import ProgramLifecycle
from agentlog.domains.schedules.schedule import Schedule
from agentlog.domains.tasks.events import task_stream
from agentlog.domains.tasks.lifecycle import TaskLifecycle
from agentlog.eventstore import Event, EventStore, NewEvent, derived_event_id
from agentlog.eventstore.folds import Planned, StreamFolds, Written, append_decided
from agentlog.handlers.budgets.reservations import BudgetFold, Reservations

__all__ = ["Actor", "BudgetFold", "Coordinator", "Planned", "TaskFold", "Written"]


class TaskFold(BaseModel):
    """A task's lifecycle (`domains.tasks.lifecycle`) and the stream version it is folded to."""

    version: int = 0
    task: TaskLifecycle = Field(default_factory=TaskLifecycle)

    def fold(self, event: Event, version: int | None = None) -> None:
        self.task.fold(event)
        if version is not None:
            self.version = version


class Actor:
    """Who a command is for, and how its event ids are made (derived from an Idempotency-Key when given)."""

    def __init__(self, name: str, kind: str, token_id: str | None, idempotency_key: str | None = None) -> None:
        self.metadata = {"actor": name, "actor_kind": kind, **({"token_id": token_id} if token_id else {})}
        # Unambiguous whatever the names hold (a person `bob` with key `x:y` is not person `bob:x` with key `y`).
        self._key = None if idempotency_key is None else orjson.dumps([kind, name, idempotency_key]).decode()
        self._count = 0
        self._minted: dict[str, int] = {}

    @property
    def key(self) -> str | None:
        """The request's Idempotency-Key as its events' metadata records it (with who sent it)."""
        return self._key

    def mint(self, prefix: str) -> str:
        """A new id for something the request creates (a message, a claim, a task without an id of its own):
        random, or derived from the Idempotency-Key, so that a request run again after its first run was cut off
        names what it creates as the first run did, and its appends are the first run's again (not a 500)."""
        if self._key is None:
            return prefix + secrets.token_hex(8)
        number = self._minted[prefix] = self._minted.get(prefix, -1) + 1
        return prefix + uuid.uuid5(uuid.NAMESPACE_URL, f"{self._key}#{prefix}{number}").hex[:16]

    def new(self, event: Event) -> NewEvent:
        if self._key is None:
            return NewEvent(event, metadata=self.metadata)
        event_id = derived_event_id("api", uuid.uuid5(uuid.NAMESPACE_URL, self._key), self._count)
        self._count += 1
        return NewEvent(event, event_id, {**self.metadata, "idempotency_key": self._key})

    def again(self) -> None:
        """A retry of the command after a version conflict: the same ids again."""
        self._count = 0


class Coordinator:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.members: StreamFolds[RegistryEntry] = StreamFolds(store, RegistryEntry)
        self.locks: StreamFolds[LockState] = StreamFolds(store, LockState)
        self.claims: StreamFolds[ClaimsState] = StreamFolds(store, ClaimsState)
        self.tasks: StreamFolds[TaskFold] = StreamFolds(store, TaskFold)
        self.reservations = Reservations(store)
        self.operations: StreamFolds[OperationsState] = StreamFolds(store, OperationsState)
        self.schedules: StreamFolds[Schedule] = StreamFolds(store, Schedule)
        self.programs: StreamFolds[ProgramLifecycle] = StreamFolds(store, ProgramLifecycle)

    async def decide(self, actor: Actor, plan: Callable[[], Awaitable[Sequence[Planned]]]) -> Written:
        """Run `plan` (which folds what it needs and returns [(stream, expected version, events)]) and append it;
        again from a fresh fold when another writer took a version first."""
        return await append_decided(self.store, plan, actor.new, actor.again)

    async def member(self, agent_id: str) -> RegistryEntry:
        return await self.members.current(member_stream(check_agent_id(agent_id)))

    async def registered(self, agent_id: str) -> RegistryEntry:
        entry = await self.member(agent_id)
        if not entry.registered:
            state = "was never registered" if entry.state == "unknown" else f"is {entry.state}"
            raise NotFoundError(f"agent {agent_id} {state}; register it first (PUT /api/v1/agents/{agent_id})")
        return entry

    async def lock(self, resource: str) -> tuple[str, LockState]:
        stream = lock_stream(resource)
        return stream, await self.locks.current(stream)

    async def held_locks(self) -> list[tuple[str, str, int]]:
        """(resource, holder, fencing token) of locks held now, as the locks projection shows them."""
        rows = await self.store.pool.fetch(QUERIES["held_locks"])
        return [(row["resource"], row["holder"], row["fencing_token"]) for row in rows]

    async def task(self, task_id: str) -> TaskFold:
        return await self.tasks.current(task_stream(task_id))

    async def budget(self, budget_id: str) -> BudgetFold:
        return await self.reservations.budget(budget_id)

    async def claims_state(self) -> ClaimsState:
        return await self.claims.current(CLAIMS_STREAM)

    async def claims_by_locks(self, resource: str, holder: str) -> None:
        """A lock on a path another agent claimed exclusively is refused (the claim conflicts with it)."""
        state = await self.claims_state()
        conflicts = [
            claim for claim in state.claims.values()
            if claim.kind == "path" and claim.exclusive and claim.holder != holder
            and claim_rules.lock_conflicts(claim.pattern, resource)
        ]  # fmt: skip
        if conflicts:
            raise HeldError(
                f"lock {resource!r} is inside {conflicts[0].pattern!r}, claimed by {conflicts[0].holder}",
                [Conflict("claim", c.holder, claim_id=c.claim_id, pattern=c.pattern, exclusive=c.exclusive)
                 for c in conflicts],
            )  # fmt: skip
