"""Deciders: control decisions as pure functions of the log, and the handler that records them.

A decider folds the events it listens to into a state (`evolve`) and, after each one, says what should happen
next (`decide`), one decision at a time until it has nothing more to say; each decision is folded into the state
at once, so the next one sees it. There is no clock, no randomness and no I/O in a decider: time arrives as
`TimerFired` events, and ids of new things are derived from the id of the event that caused them. The same log
therefore always yields the same decisions, which is what `verify_decider` checks. Settings (a grace period, a
restart limit) are part of the log too: a process that hosts a decider records `DeciderConfigured` when it starts
with settings other than the last recorded (`record_settings`), and the decider folds that event into its state and
decides with the state's settings from there on.

`DecisionHandler` hosts a decider in the handler runner. Decisions are appended in the batch's transaction, all in
one call, with ids derived from (decider, causing event, index), so a batch retried after a crash appends nothing
twice, and with the decider's name and the causing event's id in their metadata. When the handler later reads its
own decisions back from the log it skips them: they are already in its state.

The state is saved with every batch that folded an input, in the same transaction as the checkpoint, and saved
by key (`KeyedState`): a head row (compare-and-set on a sequence number, so two instances cannot both save) plus
one row per entry of the state's keyed collections (a document, an agent), of which a batch writes only those it
changed. Saving the whole state with every batch made each decision cost as much as the number of documents the
system knows; by key it costs what the batch touched. A restarted handler loads the rows instead of refolding the
whole log; missing, outdated or incomplete rows are rebuilt by folding the log and written anew.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import orjson
import structlog
from pydantic import BaseModel

from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.eventstore import (
    ANY,
    START,
    ConcurrencyRetryError,
    Event,
    EventStore,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    TypedEvent,
    WrongExpectedVersionError,
    derived_event_id,
)
from agentlog.eventstore.decoding import decode_wanted
from agentlog.handlers.decider_state import KeyedState, load_state, save_state
from agentlog.handlers.handler import HandlerBatch

log = structlog.get_logger("handlers.decider")

S = TypeVar("S", bound=KeyedState)

MAX_ROUNDS_PER_EVENT = 100_000
"""A decider still deciding after this many rounds for one event has a bug (a decision that does not change the
state it was decided from); failing loudly beats appending forever."""


@dataclass(frozen=True, slots=True)
class Fact:
    """An event as a decider sees it. `position` is its global position (a logical clock for recency); None for
    the decider's own decisions, folded before they reach the log."""

    event: Event
    event_id: uuid.UUID
    stream_id: str
    position: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    stream_id: str
    event: Event


class Decider(Protocol[S]):
    name: ClassVar[str]
    input_types: ClassVar[frozenset[str]]
    state_model: ClassVar[type[S]]
    state_version: ClassVar[int]
    """Bump when the state's shape or meaning changes: saved states of another version are refolded."""
    @property
    def configured(self) -> BaseModel:
        """The settings this process was started with: its initial state's, and what `record_settings` records."""
        ...

    def initial_state(self) -> S: ...

    def evolve(self, state: S, fact: Fact) -> S:
        """Fold one event (an input, or one of the decider's own decisions) into the state; may update in place."""
        ...

    def decide(self, state: S, fact: Fact) -> Sequence[Decision]:
        """The next decisions after `fact`, given a state that already includes it and every earlier decision.

        Decisions returned together must not depend on each other (they are folded after all were made); a
        decider whose decisions interact returns one at a time. `step` asks again until nothing is returned.
        """
        ...


def decision_id(decider: str, cause: uuid.UUID, index: int) -> uuid.UUID:
    return derived_event_id(decider, cause, index)


def step(decider: Decider[S], state: S, fact: Fact) -> tuple[S, list[Decision]]:
    """Fold one input event and every decision it leads to; return the new state and the decisions, in order."""
    state = decider.evolve(state, fact)
    decisions: list[Decision] = []
    for _ in range(MAX_ROUNDS_PER_EVENT):
        round_ = decider.decide(state, fact)
        if not round_:
            return state, decisions
        for decision in round_:
            own = Fact(
                decision.event, decision_id(decider.name, fact.event_id, len(decisions)), decision.stream_id, None
            )
            state = decider.evolve(state, own)
            decisions.append(decision)
    raise RuntimeError(f"decider {decider.name} kept deciding after {fact.event_id}: {len(decisions)} decisions")


async def record_settings(store: EventStore, decider: Decider[Any]) -> bool:
    """Record the decider's configured settings unless they are the last ones recorded; True when recorded.

    Called by a process before it starts hosting the decider. Whichever process records last sets the settings
    every instance decides with from then on, so processes sharing a database should agree on them.
    """
    wanted = decider.configured.model_dump(mode="json")
    stream = decider_stream(decider.name)
    for _ in range(10):
        version = await store.stream_version(stream)
        if version:
            (last,) = await store.read_stream(stream, from_version=version, limit=1)
            recorded = store.decode(last)
            if isinstance(recorded, DeciderConfigured) and recorded.settings == wanted:
                return False
        try:
            await store.append(stream, [DeciderConfigured(decider=decider.name, settings=wanted)], version)
        except WrongExpectedVersionError:
            continue  # another process recorded its settings at the same moment: compare with those
        log.info("decider.configured", decider=decider.name, **wanted)
        return True
    raise ConcurrencyRetryError(f"could not record the settings of decider {decider.name}: too many racing writers")


def is_own_decision(decider_name: str, event: RecordedEvent | TypedEvent) -> bool:
    return bool(event.metadata) and event.metadata.get("decider") == decider_name


def fact_of(event: TypedEvent) -> Fact:
    return Fact(event.event, event.event_id, event.stream_id, event.global_position)


class DecisionHandler(Generic[S]):
    """Hosts a decider in the handler runner: folds each batch, appends the decisions, saves what changed.

    The folded state is kept in memory between batches, but only once the batch that produced it committed
    (`batch_committed`, called by the runner), and never across sessions (`session_started`): after a failed
    commit or a takeover it is loaded from the database again, where it always matches the checkpoint.
    """

    def __init__(self, decider: Decider[S]) -> None:
        self.decider = decider
        self.name = decider.name
        self.event_types: frozenset[str] | None = decider.input_types
        self._state: S | None = None
        self._sequence = 0
        self._pending: tuple[S, int] | None = None

    @property
    def state(self) -> S | None:
        """The state as of the last committed batch (None until one committed in this session); read, never change."""
        return self._state

    def session_started(self) -> None:
        self._state, self._pending = None, None

    def batch_committed(self) -> None:
        if self._pending is not None:
            self._state, self._sequence = self._pending
            self._pending = None

    async def handle(self, batch: HandlerBatch) -> None:
        state, self._state, self._pending = self._state, None, None  # until this batch commits, reload if asked
        sequence, rewrite = self._sequence, False
        if state is None:
            state, sequence, rewrite = await _load_state(batch, self.decider)
        appends: list[StreamAppend] = []
        inputs = 0
        for event in batch.events:
            if is_own_decision(self.name, event):
                continue
            inputs += 1
            state, decisions = step(self.decider, state, fact_of(event))
            metadata = {"decider": self.name, "causation_id": str(event.event_id)}
            for index, decision in enumerate(decisions):
                new = NewEvent(decision.event, decision_id(self.name, event.event_id, index), metadata)
                appends.append(StreamAppend(decision.stream_id, (new,), ANY))
                log.info(
                    "decider.decided",
                    decider=self.name,
                    decision=decision.event.event_type,
                    stream=decision.stream_id,
                    **_loggable(decision.event),
                )
        if appends:  # one round trip for the whole batch's decisions, in the order they were made
            results = await batch.store.append_batch(appends, connection=batch.connection)
            batch.appended = batch.appended or not all(result.duplicate for result in results)
        if inputs or rewrite:  # a batch of the decider's own decisions read back changed nothing to save
            decider = self.decider
            if not await save_state(
                batch.connection, decider.name, decider.state_version, state, sequence, everything=rewrite
            ):
                raise ConcurrencyRetryError(f"the saved state of decider {self.name} moved; reloading it")
            sequence += 1
        self._pending = (state, sequence)


def _loggable(event: Event) -> dict[str, Any]:
    data = event.to_data()
    return {key: value for key, value in data.items() if key in {"document_id", "agent_id", "manager_id", "reason"}}


async def _load_state(batch: HandlerBatch, decider: Decider[S]) -> tuple[S, int, bool]:
    """The saved state, its sequence, and whether every row must be written at the next save (after a refold)."""
    state, sequence = await load_state(batch.connection, decider.name, decider.state_model, decider.state_version)
    if state is not None:
        return state, sequence, False
    # Nothing saved (first run), or a state of another shape or with rows missing: fold everything before this
    # batch again.
    until = batch.events[0].position if batch.events else None
    state = await fold_log(batch.store, decider, until=until)
    log.info("decider.state_rebuilt", decider=decider.name, until=str(until))
    return state, sequence, True


# -- folding and verifying ---------------------------------------------------------------------------------------


async def _read_log(store: EventStore, until: LogPosition | None) -> list[RecordedEvent]:
    """Every event before `until` (all when None), in canonical order."""
    found: list[RecordedEvent] = []
    after = START
    while True:
        page = await store.read_all(after=after, limit=5_000)
        if not page:
            return found
        for event in page:
            if until is not None and event.position >= until:
                return found
            found.append(event)
        after = page[-1].position


async def initial_state(store: EventStore, decider: Decider[S]) -> S:
    """The state a fold of the log starts from: with the first settings the log records for the decider, if any.

    History from before settings were recorded (a log older than `DeciderConfigured`) is decided alike by every
    replay only if it starts from the same settings; the first recorded ones are the best guess there is, and
    better than whatever the replaying process happens to be configured with.
    """
    state = decider.initial_state()
    first, _ = decode_wanted(store.catalogue, await store.read_stream(decider_stream(decider.name), limit=1), None)
    if first:
        state = decider.evolve(state, fact_of(first[0]))
    return state


async def _read_inputs(store: EventStore, decider: Decider[Any], until: LogPosition | None) -> list[TypedEvent]:
    """The decider's input events before `until`, decoded, skipping what the live handler skips."""
    inputs, _ = decode_wanted(store.catalogue, await _read_log(store, until), decider.input_types)
    return inputs


async def fold_log(store: EventStore, decider: Decider[S], *, until: LogPosition | None = None) -> S:
    """The decider's state after every input event before `until` (all of them when None)."""
    state = await initial_state(store, decider)
    for event in await _read_inputs(store, decider, until):
        if not is_own_decision(decider.name, event):
            state, _ = step(decider, state, fact_of(event))
    return state


@dataclass(frozen=True, slots=True)
class DecisionDifference:
    """One input event after which the decider would now decide differently from what the log records."""

    cause_id: uuid.UUID
    cause_position: int
    cause_type: str
    recorded: tuple[tuple[str, str, str], ...]
    refolded: tuple[tuple[str, str, str], ...]

    def describe(self) -> str:
        def show(items: Sequence[tuple[str, str, str]]) -> str:
            return "; ".join(f"{stream} {kind} {data}" for stream, kind, data in items) or "(nothing)"

        return (
            f"after {self.cause_type} {self.cause_id} at position {self.cause_position}: "
            f"recorded {show(self.recorded)} / refolded {show(self.refolded)}"
        )


async def verify_decider(store: EventStore, decider: Decider[S], *, until: LogPosition) -> list[DecisionDifference]:
    """Refold the decider over the log up to its checkpoint and compare every decision with the recorded one."""
    events = await _read_log(store, None)
    recorded: dict[uuid.UUID, list[tuple[str, str, str]]] = {}
    for event in events:
        if is_own_decision(decider.name, event):
            cause = uuid.UUID(str(event.metadata["causation_id"]))
            recorded.setdefault(cause, []).append((event.stream_id, event.event_type, _canonical(event.data)))
    differences: list[DecisionDifference] = []
    state = await initial_state(store, decider)
    folded = [event for event in events if event.position <= until]
    inputs, _ = decode_wanted(store.catalogue, folded, decider.input_types)
    for typed in inputs:
        if is_own_decision(decider.name, typed):
            continue
        state, decisions = step(decider, state, fact_of(typed))
        refolded = [(d.stream_id, d.event.event_type, _canonical(d.event.to_data())) for d in decisions]
        if refolded != recorded.get(typed.event_id, []):
            differences.append(
                DecisionDifference(
                    typed.event_id,
                    typed.global_position,
                    typed.event_type,
                    tuple(recorded.get(typed.event_id, [])),
                    tuple(refolded),
                )
            )
    return differences


def _canonical(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
