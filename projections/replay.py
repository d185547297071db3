"""Rebuilding a projection from the log without stopping anything, and proving a rebuild matches the live one.

A rebuild writes into the projection's shadow schema from the start of the log, batch by batch, each batch in one
transaction with the rebuild's own checkpoint (so a rebuild killed at any point resumes where it stopped, and the
live tables are never touched). Caught up with the head, it swaps in one transaction: the live checkpoint row and
then the live tables are locked (a live batch in flight finishes first, the next one waits), replaced by the
shadow's, the views over them are recreated, and the live checkpoint is set to the rebuild's. The live runner's
next claim then finds its checkpoint moved, and it resumes from the rebuilt position: nothing is applied twice or
skipped.

`verify` builds the same shadow, then holds the live checkpoint row (the live runner cannot commit meanwhile),
brings the shadow to exactly the live position and compares the tables row by row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from agentlog.eventstore import START, EventStore, LogPosition, RecordedEvent, TypedEvent
from agentlog.eventstore.decoding import decode_wanted, takes_raw_events, wanted_records
from agentlog.eventstore.errors import AgentlogError
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import Connection, connect
from agentlog.projections.projection import (
    LIVE_SCHEMA,
    Projection,
    rebuild_lock,
    replay_checkpoint,
    replay_checkpoint_prefix,
    shadow_schema,
)
from agentlog.projections.queries import QUERIES

log = structlog.get_logger("projections.replay")


class RebuildAlreadyRunningError(AgentlogError):
    """Another process is rebuilding or verifying this projection; wait for it to finish or stop it."""


class RebuildCheckpointMovedError(AgentlogError):
    """The rebuild's checkpoint is not where this rebuild left it; nothing was swapped: run the rebuild again."""


@dataclass(frozen=True, slots=True)
class Progress:
    projection: str
    done: int
    total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    side: str
    """'live only' or 'rebuilt only'."""
    row: dict[str, Any]


@dataclass(slots=True)
class RebuildOutcome:
    projection: str
    events: int
    seconds: float
    position: LogPosition
    differences: list[Difference] = field(default_factory=list)


class ShadowBuild:
    """One projection's rebuild into its shadow schema, on a dedicated connection holding the rebuild lock.

    The lock is the projection's, whatever the version (`rebuild_lock`): the shadow schema is the projection's too,
    and a second rebuild would drop it under the first. The checkpoint is the version's (`replay_checkpoint`), so a
    rebuild never resumes another version's work.
    """

    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        *,
        batch_size: int = 50_000,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.projection = projection
        self.schema = shadow_schema(projection.name)
        self.checkpoint = replay_checkpoint(projection)
        self.position = START
        self.events = 0
        self._batch_size = batch_size
        self._on_progress = on_progress
        self._total = 0
        self._connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the shadow build is not open; use `async with build.opened():`")
        return self._connection

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[ShadowBuild]:
        # Asynchronous commits: the shadow is derived state and its checkpoint moves with it (see the runner).
        self._connection = await connect(
            self.store.url,
            application_name=f"agentlog replay {self.projection.name}",
            synchronous_commit="off",
            search_path=self.schema,
        )
        try:
            if not await recorder.try_lock_handler(self._connection, rebuild_lock(self.projection.name)):
                raise RebuildAlreadyRunningError(
                    f"another process is rebuilding or verifying projection {self.projection.name}; "
                    "wait for it to finish or stop it, then run this again"
                )
            yield self
        finally:
            await self._connection.close()
            self._connection = None

    async def prepare(self, *, resume: bool = True) -> bool:
        """Resume an interrupted rebuild of this version (if `resume`), or start afresh; True when resuming."""
        connection = self.connection
        tables = list(self.projection.tables)
        resumable = (
            resume
            and await connection.fetchval(QUERIES["shadow_exists"], self.schema, tables)
            and await connection.fetchval(QUERIES["checkpoint_exists"], self.checkpoint)
        )
        if not resumable:
            async with connection.transaction():
                await connection.execute(QUERIES["forget_rebuilds"], replay_checkpoint_prefix(self.projection.name))
                await connection.execute(QUERIES["create_shadow"], LIVE_SCHEMA, self.schema, tables)
        self.position = await recorder.load_checkpoint(connection, self.checkpoint)
        row = await connection.fetchrow(QUERIES["select_checkpoint_row"], self.checkpoint)
        self.events = int(row["events_applied"]) if row else 0
        self._total = self.events + int(await connection.fetchval(QUERIES["count_events_after"], *self.position))
        log.info(
            "replay.started",
            projection=self.projection.name,
            resumed=bool(resumable),
            from_position=str(self.position),
            events_to_go=self._total - self.events,
        )
        self._report()
        return bool(resumable)

    async def catch_up(self, until: LogPosition | None = None) -> None:
        """Apply the log after the shadow's position: up to `until`, or until a read comes back short."""
        while until is None or self.position < until:
            events = await recorder.select_log(self.connection, self.position, self._batch_size)
            if until is not None:
                events = [event for event in events if event.position <= until]
            if not events:
                if until is not None or await recorder.select_held_back(self.connection, self.position):
                    await asyncio.sleep(0.01)  # committed events wait behind the barrier
                    continue
                return
            async with self.connection.transaction():
                await self._apply(events)
            if until is None and len(events) < self._batch_size:
                return

    async def _apply(self, events: Sequence[RecordedEvent]) -> None:
        """Apply a batch and move the rebuild's checkpoint, in the caller's transaction."""
        wanted = self.projection.event_types
        if takes_raw_events(self.projection):
            selected: Sequence[RecordedEvent | TypedEvent] = wanted_records(events, wanted)
        else:
            selected, undecodable = decode_wanted(self.store.catalogue, events, wanted)
            skipped = [(skip.recorded, skip.reason) for skip in undecodable]
            await recorder.insert_skipped(self.connection, self.checkpoint, skipped)
        if selected:
            await self.projection.apply(self.connection, selected)
        last = events[-1]
        moved = await recorder.advance_checkpoint(
            self.connection, self.checkpoint, self.position, last.position, last.recorded_at, len(events)
        )
        if not moved:
            raise RebuildCheckpointMovedError(
                f"the rebuild checkpoint of {self.projection.name} moved under this rebuild; run the rebuild again"
            )
        self.position = last.position
        self.events += len(events)
        self._report()

    def _report(self) -> None:
        self._total = max(self._total, self.events)
        if self._on_progress is not None:
            self._on_progress(Progress(self.projection.name, self.events, self._total))

    async def swap(self) -> None:
        """Make the shadow the live projection, in one transaction, and record its version.

        The live checkpoint must say exactly what the live tables hold: it takes the rebuild checkpoint only if that
        is still this rebuild's, at the position this rebuild built the shadow to. Anything else (the checkpoint
        gone or moved: another rebuild, or a hand, was at work) rolls the whole swap back, live tables and live
        checkpoint untouched, and discards the shadow: it holds what no checkpoint says, so a rerun must not resume
        from it.
        """
        try:
            await self._swap()
        except RebuildCheckpointMovedError as error:
            log.error("replay.swap_refused", projection=self.projection.name, error=str(error))
            await self.discard()
            raise
        log.info("replay.swapped", projection=self.projection.name, position=str(self.position))

    async def _swap(self) -> None:
        connection = self.connection
        async with connection.transaction():
            await recorder.commit_durably(connection)
            # The rebuild checkpoint row first, held to the end: nothing can move it between this check and the
            # adoption. Then the live runner's lock order: its checkpoint row (a batch claims it before it
            # writes), then its tables. A live batch in flight commits first; the next one waits at its claim.
            built = await connection.fetch(QUERIES["select_checkpoint_row"], self.checkpoint)
            self._check_adoptable(built)
            await connection.execute(QUERIES["select_checkpoint_row"], self.projection.name)
            await connection.execute(
                QUERIES["swap_projection"], LIVE_SCHEMA, self.schema, list(self.projection.tables)
            )
            adopted = await connection.fetch(
                QUERIES["adopt_checkpoint"], self.projection.name, self.checkpoint, *self.position
            )
            self._check_adoptable(adopted)
            await connection.execute(QUERIES["forget_skipped"], self.projection.name)
            await connection.execute(QUERIES["adopt_skipped"], self.projection.name, self.checkpoint)
            await connection.execute(QUERIES["record_version"], self.projection.name, self.projection.version, True)
            await connection.execute(QUERIES["forget_rebuilds"], replay_checkpoint_prefix(self.projection.name))

    def _check_adoptable(self, rows: Sequence[Any]) -> None:
        """Raise (rolling the swap back) unless `rows` is one checkpoint row at exactly this rebuild's position."""
        found = [LogPosition(row["transaction_id"], row["global_position"]) for row in rows]
        if found != [self.position]:
            where = f"at {', '.join(str(position) for position in found)}" if found else "gone"
            raise RebuildCheckpointMovedError(
                f"the rebuild checkpoint of {self.projection.name} is {where}, not at {self.position} where this "
                "rebuild left it; nothing was swapped and the shadow was discarded: run the rebuild again"
            )

    async def compare(self, max_rows: int) -> list[Difference]:
        """Row-by-row differences between the live tables and the shadow, both at the live checkpoint."""
        connection = self.connection
        differences: list[Difference] = []
        async with connection.transaction():
            live = await connection.fetchrow(QUERIES["select_checkpoint_row"], self.projection.name)
            live_position = START if live is None else LogPosition(live["transaction_id"], live["global_position"])
            if self.position > live_position:
                raise AgentlogError(
                    f"the rebuild of {self.projection.name} passed the live checkpoint; verify again"
                )
            while self.position < live_position:
                events = await recorder.select_log(connection, self.position, self._batch_size)
                events = [event for event in events if event.position <= live_position]
                if not events:
                    raise AgentlogError(f"events up to {live_position} are not readable; verify again")
                await self._apply(events)
            for table in self.projection.tables:
                for row in await connection.fetch(
                    QUERIES["table_differences"], LIVE_SCHEMA, self.schema, table, max_rows
                ):
                    differences.append(Difference(table, row["side"], orjson.loads(row["row_data"])))
        return differences

    async def discard(self) -> None:
        async with self.connection.transaction():
            await self.connection.execute(QUERIES["drop_shadow"], self.schema)
            await self.connection.execute(QUERIES["forget_rebuilds"], replay_checkpoint_prefix(self.projection.name))


async def rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = 50_000,
    on_progress: ProgressCallback | None = None,
) -> RebuildOutcome:
    """Rebuild `projection` from the log into its shadow and swap it in, while everything keeps running."""
    started = time.monotonic()
    build = ShadowBuild(store, projection, batch_size=batch_size, on_progress=on_progress)
    async with build.opened():
        await build.prepare()
        first_event = build.events
        await build.catch_up()
        await build.swap()
    return RebuildOutcome(projection.name, build.events - first_event, time.monotonic() - started, build.position)


async def verify(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = 50_000,
    on_progress: ProgressCallback | None = None,
    max_rows: int = 20,
) -> RebuildOutcome:
    """Rebuild `projection` into its shadow and compare it with the live tables; the live ones stay as they are."""
    started = time.monotonic()
    build = ShadowBuild(store, projection, batch_size=batch_size, on_progress=on_progress)
    async with build.opened():
        await build.prepare(resume=False)  # a resumed shadow could be past the live position
        target = await recorder.select_checkpoint(store.pool, projection.name) or START
        await build.catch_up(until=target)
        differences = await build.compare(max_rows)
        await build.discard()
    return RebuildOutcome(projection.name, build.events, time.monotonic() - started, build.position, differences)
