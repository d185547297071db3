"""A decider hosted by the runner: decisions appended once with derived ids, state saved with the checkpoint,
and `verify_decider` proving that refolding the log gives the recorded decisions (and catching one that does not),
also after the decider's settings changed (they are in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from agentlog.domains.documents.events import DocumentIdled, PersonJoined, PersonLeft
from agentlog.eventstore import ANY, START, EventStore, NewEvent
from agentlog.eventstore.decoding import decode_wanted
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerBatch, HandlerRunner
from agentlog.handlers.decider import DecisionHandler, record_settings, verify_decider
from agentlog.handlers.decisions import decision_id
from agentlog.handlers.documents.activity import DocumentActivity


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as opened:
        yield opened


def joined(connection: str) -> PersonJoined:
    return PersonJoined(user_id="ada", people_present=1, connection_id=connection, server_id="s1")


def left(connection: str) -> PersonLeft:
    return PersonLeft(user_id="ada", people_present=0, connection_id=connection, server_id="s1")


async def run_until_caught_up(store: EventStore, decider: DocumentActivity) -> None:
    runner = HandlerRunner(store, [DecisionHandler(decider)], batch_size=3)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(20):
        while await recorder.select_checkpoint(store.pool, decider.name) != await store.head():
            await asyncio.sleep(0.02)
    runner.stop.set()
    await task


async def decisions(store: EventStore) -> list[tuple[str, str]]:
    events = await store.read_all(limit=10_000)
    return [(e.stream_id, e.event_type) for e in events if (e.metadata or {}).get("decider") == "document-activity"]


async def test_decisions_are_recorded_once_and_refolding_the_log_agrees(store: EventStore) -> None:
    for document in ("a", "b"):
        await store.append(f"document-{document}", [joined("c1"), left("c1"), joined("c2")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    first = await decisions(store)
    assert first == [
        ("document-a", "DocumentActivated"), ("document-a", "TimerScheduled"), ("document-a", "TimerCancelled"),
        ("document-b", "DocumentActivated"), ("document-b", "TimerScheduled"), ("document-b", "TimerCancelled"),
    ]  # fmt: skip
    # More events, a new runner (state comes from the saved snapshot): nothing is decided twice.
    await store.append("document-a", [left("c2")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    assert await decisions(store) == [*first, ("document-a", "TimerScheduled")]
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=5), until=until) == []
    # The same log under another configuration decides differently, and verify says where.
    changed = await verify_decider(store, DocumentActivity(idle_grace_s=60), until=until)
    assert len(changed) == 3 and all(d.cause_type == "PersonLeft" for d in changed)


async def test_a_decision_the_decider_would_not_make_is_reported(store: EventStore) -> None:
    await store.append("document-a", [joined("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    cause = (await store.read_stream("document-a"))[0]
    # Recorded as the decider records a decision (its derived id, index 1 after the activation), as a decider with
    # other rules would have; metadata without that id would make it an ordinary event (test_undecidable_events).
    forged = NewEvent(
        DocumentIdled(document_id="a", reason="forged"),
        decision_id("document-activity", cause.event_id, 1),
        metadata={"decider": "document-activity", "causation_id": str(cause.event_id), "decision_index": 1},
    )
    await store.append("document-a", [forged], ANY)
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    (difference,) = await verify_decider(store, DocumentActivity(idle_grace_s=5), until=until)
    assert difference.cause_id == cause.event_id
    assert "DocumentIdled" in difference.describe() and "forged" in difference.describe()


async def test_a_batch_whose_commit_failed_is_decided_again_from_the_saved_state(store: EventStore) -> None:
    await store.append("document-a", [joined("c1")], ANY)
    events, _ = decode_wanted(store.catalogue, await store.read_all(), None)
    records = [event.recorded for event in events]
    handler = DecisionHandler(DocumentActivity(idle_grace_s=5))
    async with store.pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await handler.handle(HandlerBatch(handler.name, events, records, connection, store))
        await transaction.rollback()  # as if the COMMIT had failed: nothing of the batch is in the database
        async with connection.transaction():
            await handler.handle(HandlerBatch(handler.name, events, records, connection, store))
        handler.batch_committed()
    assert await decisions(store) == [("document-a", "DocumentActivated")]


async def test_settings_recorded_in_the_log_hold_in_every_replay(store: EventStore) -> None:
    assert await record_settings(store, DocumentActivity(idle_grace_s=5))
    assert not await record_settings(store, DocumentActivity(idle_grace_s=5)), "unchanged settings: nothing new"
    await store.append("document-a", [joined("c1"), left("c1")], ANY)
    # Hosted by a process configured otherwise: the settings the log holds win.
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=60))
    assert await record_settings(store, DocumentActivity(idle_grace_s=7))  # a restart with another grace period
    await store.append("document-b", [joined("c1"), left("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=60))
    graces = {
        event.stream_id: event.data["delay_s"]
        for event in await store.read_all(limit=1_000)
        if event.event_type == "TimerScheduled"
    }
    assert graces == {"document-a": 5, "document-b": 7}
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=60), until=until) == []


async def test_history_from_before_settings_were_recorded_replays_with_the_first_recorded(store: EventStore) -> None:
    """A log older than `DeciderConfigured` (an upgrade): decided with 5 s, then 5 s recorded at the next start."""
    await store.append("document-a", [joined("c1"), left("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    assert await record_settings(store, DocumentActivity(idle_grace_s=5))
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=60), until=until) == []


class CarelessDecisionHandler(DecisionHandler[Any]):
    """A decision handler that, while `swallowing`, ends each batch with a failing statement whose error it ignores:
    the batch's transaction has failed, and its decisions, saved state and checkpoint are rolled back."""

    def __init__(self, decider: DocumentActivity) -> None:
        super().__init__(decider)
        self.swallowing = True
        self.attempts = 0
        self.commits = 0

    async def handle(self, batch: HandlerBatch) -> None:
        self.attempts += 1
        await super().handle(batch)
        if self.swallowing:
            with contextlib.suppress(asyncpg.PostgresError):
                await batch.connection.execute("SELECT 1/0")

    def batch_committed(self) -> None:
        self.commits += 1
        super().batch_committed()


async def caught_up_with(store: EventStore, handler: DecisionHandler[Any]) -> None:
    async with asyncio.timeout(20):
        while await recorder.select_checkpoint(store.pool, handler.name) != await store.head():
            await asyncio.sleep(0.01)


async def rolled_back_attempts(handler: CarelessDecisionHandler, logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wait for the batch to be tried three times (or, wrongly, taken as committed); the aborts logged meanwhile."""
    attempts, commits = handler.attempts, handler.commits
    async with asyncio.timeout(20):
        while handler.attempts < attempts + 3 and handler.commits == commits:
            await asyncio.sleep(0.01)
    return [entry for entry in logs if entry["event"] == "handler.batch_aborted"]


async def test_a_decision_batch_rolled_back_by_a_swallowed_error_leaves_the_state_where_it_was(
    store: EventStore,
) -> None:
    """Both kinds of batch: one whose decisions are appended (it commits durably), one that decides nothing."""
    await store.append("document-a", [joined("c1"), left("c1"), joined("c2")], ANY)
    handler = CarelessDecisionHandler(DocumentActivity(idle_grace_s=5))
    runner = HandlerRunner(store, [handler], batch_size=3)
    saved_sequence = "SELECT sequence FROM agentlog.decider_states WHERE name = 'document-activity'"
    with capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        try:
            aborted = await rolled_back_attempts(handler, logs)
            assert handler.commits == 0 and runner.instances[0].batches_applied == 0
            assert handler._state is None, "the in-memory state advanced past a batch that was rolled back"
            assert await decisions(store) == []
            assert await recorder.select_checkpoint(store.pool, handler.name) == START
            assert await store.pool.fetchval(saved_sequence) is None
            aborted_appending = len(aborted)

            handler.swallowing = False
            await caught_up_with(store, handler)
            checkpoint, commits = await recorder.select_checkpoint(store.pool, handler.name), handler.commits
            assert commits >= 1 and await store.pool.fetchval(saved_sequence) == 1

            handler.swallowing = True
            await store.append("document-a", [joined("c3")], ANY)  # a second person: nothing to decide
            aborted = await rolled_back_attempts(handler, logs)
            assert handler.commits == commits, "batch_committed() was called for a batch that was rolled back"
            assert handler._state is None, "the in-memory state advanced past a batch that was rolled back"
            assert await recorder.select_checkpoint(store.pool, handler.name) == checkpoint
            assert await store.pool.fetchval(saved_sequence) == 1
            assert 0 < aborted_appending < len(aborted), "each kind of batch logs its abort"
            assert {entry["sqlstate"] for entry in aborted} == {"22012"}

            handler.swallowing = False
            await caught_up_with(store, handler)
            await store.append("document-a", [left("c2"), left("c3")], ANY)
            await caught_up_with(store, handler)
        finally:
            runner.stop.set()
            await task
    assert await decisions(store) == [
        ("document-a", "DocumentActivated"), ("document-a", "TimerScheduled"), ("document-a", "TimerCancelled"),
        ("document-a", "TimerScheduled"),
    ]  # fmt: skip
    assert await store.pool.fetchval(saved_sequence) == 3  # saved once per batch of inputs, none lost or repeated
    until = await recorder.select_checkpoint(store.pool, handler.name)
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=5), until=until) == []


ROWS = "SELECT key, xmin::text AS written FROM agentlog.decider_rows WHERE name = 'document-activity' ORDER BY key"


async def test_the_state_is_saved_by_key_and_a_batch_writes_only_what_it_changed(store: EventStore) -> None:
    """Saving the whole state with every batch made a decision cost as much as the documents known (issue 10,
    item 8): rows keyed by document, of which a batch writes those it touched."""
    for document in ("a", "b", "c"):
        await store.append(f"document-{document}", [joined("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    before = {row["key"]: row["written"] for row in await store.pool.fetch(ROWS)}
    assert sorted(before) == [f"{kind}/{document}" for kind in ("document", "presence") for document in "abc"]

    await store.append("document-a", [left("c1")], ANY)
    with capture_logs() as logs:
        await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))  # a new handler: loads the rows
    assert not [entry for entry in logs if entry["event"] == "decider.state_rebuilt"], "the log was refolded"
    after = {row["key"]: row["written"] for row in await store.pool.fetch(ROWS)}
    assert "presence/a" not in after, "nobody is in a: its row is gone"
    assert after["document/a"] != before["document/a"], "a's grace timer was not saved"
    assert {key: after[key] for key in after if not key.endswith("/a")} == {
        key: before[key] for key in before if not key.endswith("/a")
    }, "rows of documents the batch did not touch were written"
    assert await decisions(store) == [
        ("document-a", "DocumentActivated"), ("document-b", "DocumentActivated"), ("document-c", "DocumentActivated"),
        ("document-a", "TimerScheduled"),
    ]  # fmt: skip
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=5), until=until) == []


async def test_saved_rows_that_do_not_add_up_are_not_trusted(store: EventStore) -> None:
    for document in ("a", "b"):
        await store.append(f"document-{document}", [joined("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    await store.pool.execute("DELETE FROM agentlog.decider_rows WHERE key = 'presence/b'")  # lost by hand
    await store.append("document-b", [joined("c2")], ANY)  # someone else in b: nothing to decide
    with capture_logs() as logs:
        await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    assert [entry for entry in logs if entry["event"] == "decider.state_rebuilt"], "incomplete rows were trusted"
    keys = [row["key"] for row in await store.pool.fetch(ROWS)]
    assert keys == ["document/a", "document/b", "presence/a", "presence/b"]
    assert await decisions(store) == [("document-a", "DocumentActivated"), ("document-b", "DocumentActivated")]
    await store.append("document-b", [left("c2")], ANY)  # c1 is still in b: remembered, though its row was lost
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    assert len(await decisions(store)) == 2
    await store.append("document-b", [left("c1")], ANY)
    await run_until_caught_up(store, DocumentActivity(idle_grace_s=5))
    assert (await decisions(store))[-1] == ("document-b", "TimerScheduled")
    until = await recorder.select_checkpoint(store.pool, "document-activity")
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=5), until=until) == []
