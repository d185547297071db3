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
twice, and with the decider's name, the causing event's id and the index in their metadata. When the handler later
reads its own decisions back from the log it skips them: they are already in its state. Only an event whose id is
the one so derived counts as a decision (`handlers.decisions`): metadata is anyone's to write.

A decision is folded before it is in the log, and others may write to its stream meanwhile: an API command can land
between the event a decision was made after and the decision itself. A decider whose decisions share streams with
such writers must end up with the state the log's order gives, not the order it decided in, or it disagrees with
every other fold of those streams (the API's, the projections'). Such a decider has a `recorded(state, fact)`
method: it is given each of its own decisions as the log recorded it, at its position, keeps what it folded ahead
of the log apart until then (`handlers.tasks.dispatcher` keeps each task as the log's fold plus its decisions still
on their way), and may decide after it like after any event (their ids derive from the recorded decision's). Every
refold does the same, so decisions stay a function of the log.

A decider that raises on an event (an odd one that still decodes, which its rules do not cover) can never decide
it, however often the batch is retried: `DecisionHandler` raises `UndecidableEventError` for it, and the runner
records it as skipped (`agentlog.skipped_events`), as it does an event it cannot decode, and goes on. Every refold
(`fold_log`, `verify_decider`) skips the events the handler recorded as skipped, so it decides as the handler did.
Errors that are not the event's fault (the database, memory) are never turned into skips.

The state is saved with every batch that folded an input, in the same transaction as the checkpoint, and saved
by key (`KeyedState`): a head row (compare-and-set on a sequence number, so two instances cannot both save) plus
one row per entry of the state's keyed collections (a document, an agent), of which a batch writes only those it
changed. Saving the whole state with every batch made each decision cost as much as the number of documents the
system knows; by key it costs what the batch touched. A restarted handler loads the rows instead of refolding the
whole log; missing, outdated or incomplete rows are rebuilt by folding the log and written anew.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import asyncpg
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
    validate_stream_id,
)
from agentlog.eventstore.decoding import decode_wanted
from agentlog.eventstore.errors import (
    ClosedError,
    EventIdConflictError,
    EventTooLargeError,
    NewerSchemaVersionError,
    UnknownEventTypeError,
    UnstorableValueError,
)
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.handlers.decider_state import KeyedState, load_state, save_state
from agentlog.handlers.decisions import decision_cause, decision_id, decision_metadata, is_own_decision
from agentlog.handlers.handler import HandlerBatch, UndecidableEventError

log = structlog.get_logger("handlers.decider")

S = TypeVar("S", bound=KeyedState)

MAX_ROUNDS_PER_EVENT = 100_000
"""A decider still deciding after this many rounds for one event has a bug (a decision that does not change the
state it was decided from); failing loudly beats appending forever."""

NOT_THE_EVENTS_FAULT: tuple[type[BaseException], ...] = (
    MemoryError,
    asyncpg.PostgresError,
    ConcurrencyRetryError,
    ClosedError,
    NewerSchemaVersionError,
    UnknownEventTypeError,
    *CONNECTION_ERRORS,
)
"""Errors that say nothing about the event being decided (a decider doing I/O it should not, memory running out, a
newer or missing event type): the batch is retried, or held, and the event is never recorded as skipped for them."""


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


def step(decider: Decider[S], state: S, fact: Fact, *, recorded: bool = False) -> tuple[S, list[Decision]]:
    """Fold one input event (or, `recorded`, one of the decider's own decisions as the log recorded it) and every
    decision it leads to; return the new state and the decisions, in order."""
    state = _recorded(decider, state, fact) if recorded else decider.evolve(state, fact)
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


def fact_of(event: TypedEvent) -> Fact:
    return Fact(event.event, event.event_id, event.stream_id, event.global_position)


def reads_back(decider: Decider[Any]) -> bool:
    """Whether the decider is given its own decisions as the log recorded them (a `recorded` method)."""
    return callable(getattr(decider, "recorded", None))


def _recorded(decider: Decider[S], state: S, fact: Fact) -> S:
    folded: S = decider.recorded(state, fact)  # type: ignore[attr-defined]
    return folded


def decided_step(
    decider: Decider[S], state: S, event: TypedEvent, *, recorded: bool = False
) -> tuple[S, list[Decision]]:
    """`step`, with a failure that lies in the event (the decider raised, or decided onto an invalid stream) raised
    as `UndecidableEventError`: retrying it would fail alike forever."""
    try:
        state, decisions = step(decider, state, fact_of(event), recorded=recorded)
        for decision in decisions:
            validate_stream_id(decision.stream_id)
    except NOT_THE_EVENTS_FAULT:
        raise
    except Exception as error:
        raise UndecidableEventError(decider.name, event.recorded, error) from error
    return state, decisions


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
        first_deciding: TypedEvent | None = None
        reading_back = reads_back(self.decider)
        for event in batch.events:
            own = is_own_decision(self.name, event)
            if own and not reading_back:
                continue
            inputs += 1
            state, decisions = decided_step(self.decider, state, event, recorded=own)
            if decisions and first_deciding is None:
                first_deciding = event
            for index, decision in enumerate(decisions):
                new = NewEvent(
                    decision.event,
                    decision_id(self.name, event.event_id, index),
                    decision_metadata(self.name, event.event_id, index),
                )
                appends.append(StreamAppend(decision.stream_id, (new,), ANY))
                log.debug(  # one per decision: at info, rendering them was an eighth of a busy dispatcher's time
                    "decider.decided",
                    decider=self.name,
                    decision=decision.event.event_type,
                    stream=decision.stream_id,
                    **_loggable(decision.event),
                )
        if appends:  # one round trip for the whole batch's decisions, in the order they were made
            try:
                results = await batch.store.append_batch(appends, connection=batch.connection)
            except (EventIdConflictError, EventTooLargeError, UnstorableValueError) as error:
                # A decision's id is taken by an event with other content: appended first by someone who derived
                # the id (or by a release that decided otherwise); or the log refuses a decision's content (a
                # firing carrying a schedule's payload over the size limit, a value recorded before the store
                # refused it). Retrying would fail alike forever, so the cause is undecidable. Which cause is not
                # said: naming the first event that decided anything makes the runner apply the ones before it
                # (they decided nothing) and then that one alone, which fails again and is skipped, or goes
                # through and the culprit comes first in a later batch.
                assert first_deciding is not None
                raise UndecidableEventError(self.name, first_deciding.recorded, error) from error
            batch.appended = batch.appended or not all(result.duplicate for result in results)
        if inputs or rewrite:  # a batch of the decider's own decisions skipped (not read back) changed nothing
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


async def skipped_by(store: EventStore, decider: Decider[Any]) -> frozenset[uuid.UUID]:
    """The events the decider's handler recorded as skipped (undecodable or undecidable): a refold skips them too,
    whether or not this release could read or decide them, so that it decides exactly as the handler did."""
    skipped = await recorder.select_skipped(store.pool, decider.name, limit=sys.maxsize)
    return frozenset(event.event_id for event in skipped)


async def initial_state(store: EventStore, decider: Decider[S]) -> S:
    """The state a fold of the log starts from: with the first settings the log records for the decider, if any.

    History from before settings were recorded (a log older than `DeciderConfigured`) is decided alike by every
    replay only if it starts from the same settings; the first recorded ones are the best guess there is, and
    better than whatever the replaying process happens to be configured with. Only settings count: anyone may
    append any event to the decider's stream, and another first event (or settings that do not decode) is not
    folded in ahead of its place in the log.
    """
    state = decider.initial_state()
    first, _ = decode_wanted(store.catalogue, await store.read_stream(decider_stream(decider.name), limit=1), None)
    if first and isinstance(first[0].event, DeciderConfigured) and first[0].event.decider == decider.name:
        state = decider.evolve(state, fact_of(first[0]))
    return state


async def _read_inputs(store: EventStore, decider: Decider[Any], until: LogPosition | None) -> list[TypedEvent]:
    """The decider's input events before `until`, decoded, without what the live handler skipped, and without its
    own decisions unless it reads them back."""
    inputs, _ = decode_wanted(store.catalogue, await _read_log(store, until), decider.input_types)
    skipped = await skipped_by(store, decider)
    keep_own = reads_back(decider)
    return [e for e in inputs if e.event_id not in skipped and (keep_own or not is_own_decision(decider.name, e))]


async def fold_log(store: EventStore, decider: Decider[S], *, until: LogPosition | None = None) -> S:
    """The decider's state after every input event before `until` (all of them when None)."""
    state = await initial_state(store, decider)
    for event in await _read_inputs(store, decider, until):
        state, _ = step(decider, state, fact_of(event), recorded=is_own_decision(decider.name, event))
    return state


Described = tuple[str, str, str]
"""A decision as compared: (stream id, event type, canonical JSON of its data)."""


@dataclass(frozen=True, slots=True)
class DecisionDifference:
    """One input event after which the decider would now decide differently from what the log records."""

    cause_id: uuid.UUID
    cause_position: int
    cause_type: str
    recorded: tuple[Described, ...]
    refolded: tuple[Described, ...]
    refold_error: str | None = None
    """Set when the refolded decider raised on the event (which the live handler decided, or it would be skipped)."""

    def describe(self) -> str:
        def show(items: Sequence[Described]) -> str:
            return "; ".join(f"{stream} {kind} {data}" for stream, kind, data in items) or "(nothing)"

        refolded = f"raised {self.refold_error}" if self.refold_error is not None else show(self.refolded)
        return (
            f"after {self.cause_type} {self.cause_id} at position {self.cause_position}: "
            f"recorded {show(self.recorded)} / refolded {refolded}"
        )


def recorded_decisions(decider: str, events: Sequence[RecordedEvent]) -> dict[uuid.UUID, list[Described]]:
    """The decider's own decisions in the log (by id, `handlers.decisions`), grouped by the event that caused them."""
    recorded: dict[uuid.UUID, list[Described]] = {}
    for event in events:
        cause = decision_cause(decider, event)
        if cause is not None:
            recorded.setdefault(cause, []).append((event.stream_id, event.event_type, _canonical(event.data)))
    return recorded


async def verify_decider(store: EventStore, decider: Decider[S], *, until: LogPosition) -> list[DecisionDifference]:
    """Refold the decider over the log up to its checkpoint and compare every decision with the recorded one.

    A refolded decider that raises on an event the live handler decided is a difference, reported, not a crash of
    the whole verification (its state may then be off for what follows, as the live one's would be)."""
    events = await _read_log(store, None)
    recorded = recorded_decisions(decider.name, events)
    differences: list[DecisionDifference] = []
    state = await initial_state(store, decider)
    skipped = await skipped_by(store, decider)
    folded = [event for event in events if event.position <= until]
    inputs, _ = decode_wanted(store.catalogue, folded, decider.input_types)
    keep_own = reads_back(decider)
    for typed in inputs:
        if typed.event_id in skipped:
            continue
        own = is_own_decision(decider.name, typed)
        if own and not keep_own:
            continue
        expected = recorded.get(typed.event_id, [])
        error: str | None = None
        try:
            state, decisions = decided_step(decider, state, typed, recorded=own)
        except UndecidableEventError as undecidable:
            decisions, error = [], undecidable.reason
        refolded = [(d.stream_id, d.event.event_type, _canonical(d.event.to_data())) for d in decisions]
        if error is not None or refolded != expected:
            differences.append(
                DecisionDifference(
                    typed.event_id, typed.global_position, typed.event_type, tuple(expected), tuple(refolded), error
                )
            )
    return differences


def _canonical(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
