"""A handler appending to a stream other writers hammer (issue 9, item 5): batches/s and retries, beside the raw limit.

The handler reads one input event per batch and appends one event to `busy-1` in the batch's transaction (as a
decider or an effector recording facts does). Meanwhile `--writers` connections append single events to the same
`busy-1` as fast as they can. The batch's transaction gets its id at its claim, before the handler appends, so each
of its appends follows writes of newer transactions: that used to trip the stream-order guard (40001) on nearly
every batch. Shapes, each `--seconds` long:

  alone      the handler, nobody else writing to busy-1
  hammered   the handler, `--writers` connections appending to busy-1 all the while

each for agentlog (a handler in the runner, `store.append` writers) and for raw asyncpg doing the same work by
hand: BEGIN; claim the next input event and move a checkpoint (one statement); take the stream's lock and INSERT
the next version into a copy of the log's table; COMMIT — with raw writers appending to the same stream the same
correct way (lock, next version), each in its own transaction.

`retries` counts the handler's batch attempts beyond the first (a refused batch is rolled back and tried again).

    .venv/bin/python bench/bench_busy_stream.py                      # embedded server
    .venv/bin/python bench/bench_busy_stream.py --database-url URL   # any server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import asyncpg
import psycopg
from embedded_or_url import fresh_database, server_url

from agentlog.eventstore import ANY, Event, EventCatalogue, EventStore, new_event_id
from agentlog.eventstore.postgres.connections import configure_connection
from agentlog.handlers import HandlerBatch, HandlerRunner
from agentlog.logs import configure_logging

DATABASE = "agentlog_bench_busy"
INPUT_EVENTS = 200_000
"""More than any shape consumes: the handler never runs dry."""

catalogue = EventCatalogue()


@catalogue.register
class Hit(Event):
    """One benchmark event."""

    event_type: ClassVar[str] = "Hit"
    category: ClassVar[str] = "bench"

    n: int


class AppendsToBusyStream:
    """For each input event, one event appended to the hammered stream, in the batch's transaction."""

    name = "bench-busy"
    event_types: frozenset[str] | None = frozenset({"Hit"})

    def __init__(self) -> None:
        self.attempts = 0
        self.committed = 0

    async def handle(self, batch: HandlerBatch) -> None:
        self.attempts += 1
        for event in batch.events:
            if event.stream_id == "input-1":
                await batch.append("busy-1", [Hit(n=event.stream_version)], ANY)

    def batch_committed(self) -> None:
        self.committed += 1


@dataclass(frozen=True, slots=True)
class Outcome:
    shape: str
    batches_per_s: float
    retries_per_batch: float
    writer_events_per_s: float


async def hammer_with_agentlog(store: EventStore, stop: asyncio.Event) -> int:
    written = 0
    while not stop.is_set():
        await store.append("busy-1", [Hit(n=written)], ANY)
        written += 1
    return written


async def agentlog_shape(url: str, seconds: float, writers: int) -> Outcome:
    async with EventStore.open(url, catalogue=catalogue, pool_size=writers + 2) as store:
        handler = AppendsToBusyStream()
        runner = HandlerRunner(store, [handler], batch_size=1)
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run())
        while handler.committed < 20:  # noqa: ASYNC110 - warmed up: connected, batches flowing
            await asyncio.sleep(0.01)
        hammering = [asyncio.create_task(hammer_with_agentlog(store, stop)) for _ in range(writers)]
        start_committed, start_attempts, started = handler.committed, handler.attempts, time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - started
        committed, attempts = handler.committed - start_committed, handler.attempts - start_attempts
        stop.set()
        written = sum(await asyncio.gather(*hammering))
        runner.stop.set()
        await running
    shape = "hammered" if writers else "alone"
    retries = max(attempts - committed, 0) / max(committed, 1)
    return Outcome(shape, committed / elapsed, retries, written / elapsed)


RAW_CLAIM = """
WITH next AS (
    SELECT e.global_position FROM raw_input AS e, raw_checkpoint AS c
     WHERE e.global_position > c.global_position ORDER BY e.global_position LIMIT 1
)
UPDATE raw_checkpoint SET global_position = next.global_position FROM next RETURNING next.global_position
"""
RAW_LOCK = "SELECT pg_advisory_xact_lock(hashtext('busy-1'))"
RAW_APPEND = """
INSERT INTO raw_events (event_id, stream_id, stream_version, event_type, schema_version, data)
SELECT $1, 'busy-1', coalesce(max(stream_version), 0) + 1, 'Hit', 1, $2 FROM raw_events WHERE stream_id = 'busy-1'
"""
"""A correct append to one stream by hand: the stream's lock, then the next version (gap-free, no duplicates)."""


async def raw_shape(url: str, seconds: float, writers: int) -> Outcome:
    """The same work without agentlog: the limit for the handler's batch and for the writers."""
    setup = await asyncpg.connect(url)
    await setup.execute(
        "CREATE TABLE raw_events (LIKE agentlog.events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED "
        "INCLUDING INDEXES INCLUDING CONSTRAINTS);"
        "CREATE TABLE raw_input (global_position bigint PRIMARY KEY);"
        f"INSERT INTO raw_input SELECT generate_series(1, {INPUT_EVENTS});"
        "CREATE TABLE raw_checkpoint (global_position bigint NOT NULL); INSERT INTO raw_checkpoint VALUES (0);"
    )
    await setup.close()
    stop = asyncio.Event()

    async def hammer() -> int:
        connection = await asyncpg.connect(url)
        await configure_connection(connection)
        written = 0
        while not stop.is_set():
            async with connection.transaction():
                await connection.execute(RAW_LOCK)
                await connection.execute(RAW_APPEND, new_event_id(), {"n": written})
            written += 1
        await connection.close()
        return written

    handler = await asyncpg.connect(url)
    await configure_connection(handler)
    hammering = [asyncio.create_task(hammer()) for _ in range(writers)]
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        async with handler.transaction():
            claimed = await handler.fetchval(RAW_CLAIM)
            await handler.execute(RAW_LOCK)
            await handler.execute(RAW_APPEND, new_event_id(), {"n": claimed})
        batches += 1
    elapsed = time.perf_counter() - started
    stop.set()
    written = sum(await asyncio.gather(*hammering))
    await handler.close()
    return Outcome("hammered" if writers else "alone", batches / elapsed, 0.0, written / elapsed)


async def fill_input(url: str) -> None:
    async with EventStore.open(url, catalogue=catalogue) as store:
        for start in range(0, INPUT_EVENTS, 5_000):
            await store.append("input-1", [Hit(n=n) for n in range(start, start + 5_000)], ANY)


async def run(url: str, seconds: float, writers: int, rounds: int) -> dict[tuple[str, str], Outcome]:
    """Median outcome per (system, shape), the systems taking turns round by round."""
    results: dict[tuple[str, str], list[Outcome]] = {}
    for _ in range(rounds):
        for system in ("agentlog", "raw"):
            for hammering in (0, writers):
                bench_url = fresh_database(url, DATABASE)
                await fill_input(bench_url)
                measure = agentlog_shape if system == "agentlog" else raw_shape
                outcome = await measure(bench_url, seconds, hammering)
                print(
                    f"  {system:<9} {outcome.shape:<9} {outcome.batches_per_s:8,.0f} batches/s  "
                    f"{outcome.retries_per_batch:5.2f} retries/batch  {outcome.writer_events_per_s:8,.0f} writer ev/s",
                    flush=True,
                )
                results.setdefault((system, outcome.shape), []).append(outcome)
    return {
        key: Outcome(
            key[1],
            statistics.median(o.batches_per_s for o in outcomes),
            statistics.median(o.retries_per_batch for o in outcomes),
            statistics.median(o.writer_events_per_s for o in outcomes),
        )
        for key, outcomes in results.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("AGENTLOG_DATABASE_URL"))
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-bench-home"))
    parser.add_argument("--seconds", type=float, default=5.0, help="per shape and round (default 5)")
    parser.add_argument("--writers", type=int, default=4, help="connections hammering the stream (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default 3)")
    arguments = parser.parse_args(argv)
    configure_logging("warning")
    with server_url(arguments.database_url, arguments.home) as url:
        with psycopg.connect(url) as connection:
            version = (connection.execute("SHOW server_version").fetchone() or ("?",))[0]
        print(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}; PostgreSQL {version}")
        print(f"{arguments.writers} writers, {arguments.seconds:g} s per shape, {arguments.rounds} rounds")
        outcomes = asyncio.run(run(url, arguments.seconds, arguments.writers, arguments.rounds))
    print()
    print("| shape | raw batches/s | agentlog batches/s | agentlog/raw | agentlog retries per batch "
          "| writers' events/s raw / agentlog |")
    print("|---|---|---|---|---|---|")
    for shape in ("alone", "hammered"):
        raw, ours = outcomes[("raw", shape)], outcomes[("agentlog", shape)]
        print(
            f"| {shape} | {raw.batches_per_s:,.0f} | {ours.batches_per_s:,.0f} "
            f"| {ours.batches_per_s / raw.batches_per_s:.2f}x | {ours.retries_per_batch:.3f} "
            f"| {raw.writer_events_per_s:,.0f} / {ours.writer_events_per_s:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
