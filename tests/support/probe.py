"""A handler that records every event it applies in `probe_applied`, for exactly-once and crash tests.

Run as a process: python -m tests.support.probe DATABASE_URL [--sleep-mid-batch S] [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import ClassVar

from agentlog.eventstore import EventStore
from agentlog.handlers import HandlerBatch, HandlerRunner

CREATE_PROBE_TABLE = """
CREATE TABLE IF NOT EXISTS probe_applied (
    event_id uuid NOT NULL,
    global_position bigint NOT NULL,
    applied_by int NOT NULL DEFAULT pg_backend_pid()
)
"""  # test-only table: created by the tests, never by agentlog at run time


class ProbeHandler:
    """Inserts one row per event; optionally sleeps in the middle of each batch (inside the transaction)."""

    event_types: ClassVar[frozenset[str] | None] = None
    raw_events: ClassVar[bool] = True

    def __init__(self, name: str = "probe", sleep_mid_batch: float = 0.0) -> None:
        self.name = name
        self.sleep_mid_batch = sleep_mid_batch

    async def handle(self, batch: HandlerBatch) -> None:
        half = len(batch.records) // 2
        for index, event in enumerate(batch.records):
            if index == half and self.sleep_mid_batch:
                await asyncio.sleep(self.sleep_mid_batch)
            await batch.connection.execute(
                "INSERT INTO probe_applied (event_id, global_position) VALUES ($1, $2)",
                event.event_id,
                event.global_position,
            )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--sleep-mid-batch", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--name", default="probe")
    arguments = parser.parse_args()
    from agentlog.logs import configure_logging

    configure_logging("info", "json")
    async with EventStore.open(arguments.database_url, poll_interval=0.2) as store:
        runner = HandlerRunner(
            store,
            [ProbeHandler(arguments.name, arguments.sleep_mid_batch)],
            batch_size=arguments.batch_size,
            lock_retry_interval=0.2,
        )
        runner.stop_on_signals()
        await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
