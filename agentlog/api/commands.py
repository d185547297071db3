"""The write side: each command folds its entity's stream with the domain's rule, decides, and appends at exactly
the version it folded. Two commands that decided from the same version cannot both append: the loser folds
again and decides anew (a lock it saw free is now held: 409). Nothing is appended for a refused command.

Folds are cached per stream and caught up by reading only what was appended since (`read_stream` from the next
version), so a command costs one read of the new events and one append, whatever the stream's length.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from agentlog.api.reads import QUERIES
from agentlog.domains.budgets.events import budget_stream
from agentlog.domains.budgets.ledger import BudgetLedger
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
from agentlog.domains.tasks.events import task_stream
from agentlog.domains.tasks.lifecycle import TaskLifecycle
from agentlog.eventstore import (
    ANY,
    Event,
    EventStore,
    LogPosition,
    NewEvent,
    StreamAppend,
    WrongExpectedVersionError,
    derived_event_id,
)

ATTEMPTS = 50
Planned = tuple[str, int | None, Sequence[Event]]
"""One stream's part of a command: (stream id, the version folded or None for any, the events)."""
CACHE_SIZE = 10_000


class Foldable(Protocol):
    version: int

    def fold(self, event: Event, version: int | None = None) -> Any: ...


F = TypeVar("F", bound=Foldable)


class StreamFolds(Generic[F]):
    """The domain's fold of streams of one kind, cached (LRU) and caught up on each use."""

    def __init__(self, store: EventStore, make: Callable[[], F]) -> None:
        self._store = store
        self._make = make
        self._cache: OrderedDict[str, F] = OrderedDict()

    async def current(self, stream_id: str) -> F:
        """A fresh copy of the stream's fold as of now (the caller may change it)."""
        cached = self._cache.get(stream_id)
        state = self._make() if cached is None else _copy(cached)
        while True:
            page = await self._store.read_stream(stream_id, from_version=state.version + 1, limit=1_000)
            for recorded in page:
                state.fold(self._store.decode(recorded), recorded.stream_version)
            if len(page) < 1_000:
                break
        if cached is None or state.version > cached.version:
            self._cache[stream_id] = _copy(state)
            self._cache.move_to_end(stream_id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return state


class TaskFold(BaseModel):
    """A task's lifecycle (`domains.tasks.lifecycle`) and the stream version it is folded to."""

    version: int = 0
    task: TaskLifecycle = Field(default_factory=TaskLifecycle)

    def fold(self, event: Event, version: int | None = None) -> None:
        self.task.fold(event)
        if version is not None:
            self.version = version


class BudgetFold(BaseModel):
    """A budget's ledger (`domains.budgets.ledger`) and the stream version it is folded to."""

    version: int = 0
    ledger: BudgetLedger = Field(default_factory=BudgetLedger)

    def fold(self, event: Event, version: int | None = None) -> None:
        self.ledger.fold(event)
        if version is not None:
            self.version = version


def _copy(state: F) -> F:
    copied: F = state.model_copy(deep=True)  # type: ignore[attr-defined]
    return copied


@dataclass(frozen=True, slots=True)
class Written:
    """What a command appended: the fold after it, and where its last event landed in the log."""

    position: LogPosition
    stream_version: int
    events: Sequence[Event]


class Actor:
    """Who a command is for, and how its event ids are made (derived from an Idempotency-Key when given)."""

    def __init__(self, name: str, kind: str, token_id: str | None, idempotency_key: str | None = None) -> None:
        self.metadata = {"actor": name, "actor_kind": kind, **({"token_id": token_id} if token_id else {})}
        self._key = None if idempotency_key is None else f"{kind}:{name}:{idempotency_key}"
        self._count = 0

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
        self.budgets: StreamFolds[BudgetFold] = StreamFolds(store, BudgetFold)

    async def decide(self, actor: Actor, plan: Callable[[], Awaitable[Sequence[Planned]]]) -> Written:
        """Run `plan` (which folds what it needs and returns [(stream, expected version, events)]) and append it;
        again from a fresh fold when another writer took a version first."""
        for attempt in range(ATTEMPTS):
            actor.again()
            appends = await plan()
            batch = [
                StreamAppend(stream, tuple(actor.new(event) for event in events), ANY if expected is None else expected)
                for stream, expected, events in appends
            ]
            try:
                results = await self.store.append_batch(batch)
            except WrongExpectedVersionError:
                if attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0)
                continue
            last = max((event for result in results for event in result.events), key=lambda e: e.position)
            return Written(last.position, results[0].stream_version, [e for _, _, es in appends for e in es])
        raise AssertionError("unreachable")

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
        return await self.budgets.current(budget_stream(budget_id))

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
