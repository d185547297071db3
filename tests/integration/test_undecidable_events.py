"""Odd events and forged metadata cannot stop the deciders or break `replay --verify` (issue 9, hostile review).

An event that decodes but that a decider's rules cannot handle (a `PersonJoined` on stream `document-a/b`: the
document id is not a valid one) is isolated in a batch of its own and recorded as skipped, and every refold skips
it too. Metadata is anyone's to write: only an id derived from (decider, cause, index) makes an event a decision.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from agentlog.domains.deciders.events import decider_stream
from agentlog.domains.documents.events import DocumentIdled, PersonJoined
from agentlog.eventstore import ANY, EventStore, NewEvent
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.decider import Decision, DecisionHandler, Fact, fold_log, record_settings, verify_decider
from agentlog.handlers.decisions import decision_id
from agentlog.handlers.documents.activity import ActivityState, DocumentActivity

NAME = DocumentActivity.name


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as opened:
        yield opened


def joined(connection: str) -> PersonJoined:
    return PersonJoined(user_id="ada", people_present=1, connection_id=connection, server_id="s1")


async def run_until_caught_up(store: EventStore, handler: DecisionHandler[Any], *, batch_size: int = 10) -> None:
    runner = HandlerRunner(store, [handler], batch_size=batch_size)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(15):
            while await recorder.select_checkpoint(store.pool, handler.name) != await store.head():
                await asyncio.sleep(0.02)
    finally:
        runner.stop.set()
        await task


async def activated(store: EventStore) -> list[str]:
    return [e.stream_id for e in await store.read_all(limit=10_000) if e.event_type == "DocumentActivated"]


async def verified(store: EventStore, decider: DocumentActivity) -> list[str]:
    until = await recorder.select_checkpoint(store.pool, decider.name)
    assert until is not None
    return [difference.describe() for difference in await verify_decider(store, decider, until=until)]


async def test_an_event_the_decider_cannot_decide_is_isolated_skipped_and_the_decider_goes_on(
    store: EventStore,
) -> None:
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-before", [joined("c1")], ANY)
    await store.append("document-a/b", [joined("c2")], ANY)  # decodes; no document can be called "a/b"
    await store.append("document-after", [joined("c3")], ANY)
    with capture_logs() as logs:
        await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))

    assert await activated(store) == ["document-before", "document-after"]
    (skipped,) = await recorder.select_skipped(store.pool, NAME)
    assert skipped.stream_id == "document-a/b" and skipped.event_type == "PersonJoined"
    assert "ValidationError" in skipped.reason and "document_id" in skipped.reason
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [(entry["event"], entry["stream_id"]) for entry in errors] == [("handler.event_undecidable", "document-a/b")]

    # Every refold skips it as the handler did: verify agrees, and a state rebuilt from the log does not raise.
    assert await verified(store, DocumentActivity(idle_grace_s=5)) == []
    state = await fold_log(store, DocumentActivity(idle_grace_s=5))
    assert sorted(state.documents) == ["after", "before"]

    # A handler that must rebuild its state from the log (none saved) goes on deciding after it.
    await store.pool.execute("DELETE FROM agentlog.decider_rows WHERE name = $1", NAME)
    await store.pool.execute("DELETE FROM agentlog.decider_states WHERE name = $1", NAME)
    await store.append("document-later", [joined("c4")], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    assert await activated(store) == ["document-before", "document-after", "document-later"]
    assert len(await recorder.select_skipped(store.pool, NAME)) == 1


class Flaky(DocumentActivity):
    """Document activity whose decisions fail the first times with an error that is not the event's fault."""

    def __init__(self, failures: int, error: BaseException) -> None:
        super().__init__(idle_grace_s=5)
        self.failures, self.error = failures, error

    def decide(self, state: ActivityState, fact: Fact) -> list[Decision]:
        if self.failures:
            self.failures -= 1
            raise self.error
        return super().decide(state, fact)


@pytest.mark.parametrize(
    "error",
    [asyncpg.PostgresConnectionError("connection reset"), asyncpg.SerializationError("could not serialize")],
    ids=["connection", "database"],
)
async def test_a_transient_error_in_a_decider_is_retried_and_never_becomes_a_skip(
    store: EventStore, error: BaseException
) -> None:
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-a", [joined("c1")], ANY)
    await run_until_caught_up(store, DecisionHandler(Flaky(failures=2, error=error)))
    assert await activated(store) == ["document-a"]
    assert await recorder.select_skipped(store.pool, NAME) == []


async def test_an_event_claiming_decider_metadata_without_the_decisions_id_is_an_ordinary_event(
    store: EventStore,
) -> None:
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-a", [joined("c1")], ANY)
    (cause,) = await store.read_stream("document-a")
    forged = {"decider": NAME, "causation_id": str(cause.event_id), "decision_index": 1}
    await store.append("document-b", [NewEvent(joined("c2"), metadata=forged)], ANY)  # anyone may write this
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    # The live decider did not take the forged join for one of its decisions: it activated the document.
    assert await activated(store) == ["document-a", "document-b"]
    assert await verified(store, DocumentActivity(idle_grace_s=5)) == []


MALFORMED_METADATA: Sequence[dict[str, Any]] = [
    {"decider": NAME},
    {"decider": NAME, "causation_id": "not-a-uuid"},
    {"decider": NAME, "causation_id": 42},
    {"decider": NAME, "causation_id": None},
    {"decider": NAME, "causation_id": {"id": "x"}},
    {"decider": NAME, "causation_id": str(uuid.uuid4()), "decision_index": True},
    {"decider": NAME, "causation_id": str(uuid.uuid4()), "decision_index": "0"},
    {"decider": NAME, "causation_id": str(uuid.uuid4()), "decision_index": -1},
    {"decider": NAME, "causation_id": str(uuid.uuid4()), "decision_index": 1.5},
    {"decider": NAME, "causation_id": str(uuid.uuid4()), "decision_index": 2**62},
    {"decider": [NAME], "causation_id": str(uuid.uuid4())},
]


def _shown(metadata: dict[str, Any]) -> str:
    """A test id without the random UUIDs, the same in every process that collects it (pytest-xdist's workers)."""
    return json.dumps({key: "<uuid>" if key == "causation_id" and _is_uuid(value) else value
                       for key, value in metadata.items()})  # fmt: skip


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("metadata", MALFORMED_METADATA, ids=_shown)
async def test_malformed_decision_metadata_appended_through_sql_never_crashes_verify(
    store: EventStore, metadata: dict[str, Any]
) -> None:
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-a", [joined("c1")], ANY)
    await store.pool.execute(
        "SELECT agentlog.append_event('document-a', 'DocumentIdled', $1::jsonb, metadata => $2::jsonb)",
        {"document_id": "a", "reason": "forged"},
        metadata,
    )
    await store.append("document-b", [NewEvent(joined("c2"), metadata=metadata)], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    assert await activated(store) == ["document-a", "document-b"]
    assert await verified(store, DocumentActivity(idle_grace_s=5)) == []


async def test_a_recorded_decision_is_compared_by_its_id_with_or_without_its_index(store: EventStore) -> None:
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-a", [joined("c1")], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    cause = (await store.read_stream("document-a"))[0]
    # As a decider would have recorded it: its derived id; the second with metadata from before the index.
    for index, metadata in [
        (1, {"decider": NAME, "causation_id": str(cause.event_id), "decision_index": 1}),
        (2, {"decider": NAME, "causation_id": str(cause.event_id)}),
    ]:
        idled = DocumentIdled(document_id="a", reason=f"recorded {index}")
        await store.append("document-a", [NewEvent(idled, decision_id(NAME, cause.event_id, index), metadata)], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    (difference,) = await verified(store, DocumentActivity(idle_grace_s=5))
    assert "recorded 1" in difference and "recorded 2" in difference


async def test_a_first_event_in_the_deciders_stream_that_is_not_its_settings_is_not_folded_ahead(
    store: EventStore,
) -> None:
    await store.append("document-a", [joined("c1")], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    await store.append(decider_stream(NAME), [joined("c2")], ANY)  # anyone may append there, settings or not
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))
    # The join is decided at its place in the log, by the live decider and by the refold alike.
    assert await verified(store, DocumentActivity(idle_grace_s=5)) == []


async def test_a_decision_id_taken_in_advance_skips_its_cause_instead_of_stopping_the_decider(
    store: EventStore,
) -> None:
    """Decision ids are derived, so anyone can compute one and append another event under it first. The
    decider's own append then conflicts on every retry: its cause is undecidable, recorded as skipped, and the
    decisions after it are made."""
    await record_settings(store, DocumentActivity(idle_grace_s=5))
    await store.append("document-before", [joined("c1")], ANY)
    cause = uuid.uuid4()
    await store.pool.execute(  # the squatter, appended before the cause it anticipates
        "SELECT agentlog.append_event('squat-1', 'Squatted', '{}'::jsonb, event_id => $1)", decision_id(NAME, cause, 0)
    )
    await store.append("document-target", [NewEvent(joined("c2"), event_id=cause)], ANY)
    await store.append("document-after", [joined("c3")], ANY)
    await run_until_caught_up(store, DecisionHandler(DocumentActivity(idle_grace_s=5)))

    assert await activated(store) == ["document-before", "document-after"]
    (skipped,) = await recorder.select_skipped(store.pool, NAME)
    assert skipped.event_id == cause and "EventIdConflictError" in skipped.reason
    assert await verified(store, DocumentActivity(idle_grace_s=5)) == []
