"""Conflict detection over a real log: racing registrations of one key (exactly one wins, the others are told who),
the window closed by its timer, operations expired by the operation-expiry decider, the operations projection and
its rebuild."""

from __future__ import annotations

import asyncio

from agentlog.domains.operations.conflicts import ConflictError, OperationsState, finish, register
from agentlog.domains.operations.events import operation_stream
from agentlog.eventstore import EventStore, WrongExpectedVersionError
from agentlog.eventstore.postgres import recorder
from agentlog.handlers.coordination.operations import OperationExpiry
from agentlog.handlers.decider import verify_decider
from agentlog.projections import installed_projections
from agentlog.projections.replay import verify
from tests.support.hosting import hosted

PROJECTIONS = ("operations", "timers")


async def folded(store: EventStore, key: str) -> OperationsState:
    """The key's stream folded as the API folds it (`StreamFolds`: each event at its stream version)."""
    state = OperationsState()
    for recorded in await store.read_stream(operation_stream(key)):
        state.fold(store.decode(recorded), recorded.stream_version)
    return state


async def registered(store: EventStore, key: str, agent_id: str, operation_id: str, **options: float) -> bool:
    """Register as the API does: fold, decide, append at the version folded, again from a fresh fold when another
    writer took that version. True when this registration was appended."""
    while True:
        state = await folded(store, key)
        events = register(state, key, agent_id, "respond", operation_id, **options)  # type: ignore[arg-type]
        try:
            await store.append(operation_stream(key), events, state.version)
        except WrongExpectedVersionError:
            continue
        return bool(events)


async def wait_for(store: EventStore, sql: str, *args: object, timeout: float = 10) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while True:
            rows = await store.pool.fetch(sql, *args)
            if rows:
                return [dict(row) for row in rows]
            await asyncio.sleep(0.02)


async def caught_up(store: EventStore, names: tuple[str, ...], timeout: float = 20) -> None:
    head = await store.head()
    async with asyncio.timeout(timeout):
        for name in names:
            while (await recorder.select_checkpoint(store.pool, name) or (0, 0)) < head:
                await asyncio.sleep(0.01)


async def test_sixteen_agents_racing_for_one_key_exactly_one_wins_and_the_others_are_told_who(
    store: EventStore,
) -> None:
    async def attempt(number: int) -> str | ConflictError:
        try:
            await registered(store, "email:1234", f"agent-{number}", f"op-{number}")
        except ConflictError as refused:
            return refused
        return f"agent-{number}"

    outcomes = await asyncio.gather(*(attempt(number) for number in range(16)))
    winners = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(winners) == 1
    refusals = [outcome for outcome in outcomes if isinstance(outcome, ConflictError)]
    assert len(refusals) == 15
    assert {(r.operation.agent_id, r.operation.operation_id) for r in refusals} == {
        (winners[0], "op-" + winners[0].removeprefix("agent-"))
    }
    history = [event.event_type for event in await store.read_stream(operation_stream("email:1234"))]
    assert history == ["OperationRegistered", "TimerScheduled", "TimerScheduled"]


async def test_the_window_closes_by_its_timer_and_the_decider_expires_what_was_not_finished(store: EventStore) -> None:
    async with hosted(store, [OperationExpiry()], PROJECTIONS):
        assert await registered(store, "customer-42", "ada", "op-1", window_s=0.2, ttl_s=0.4)
        assert await registered(store, "customer-42", "ada", "op-2", window_s=0.2, ttl_s=30)
        assert await registered(store, "order-7", "bob", "op-3", window_s=0.1, ttl_s=0.3)
        state = await folded(store, "order-7")
        await store.append(operation_stream("order-7"), finish(state, "order-7", "bob", "op-3", "shipped"),
                           state.version)  # fmt: skip
        try:
            await registered(store, "customer-42", "bob", "op-4")
        except ConflictError as refused:
            assert refused.operation.agent_id == "ada"
        else:
            raise AssertionError("bob registered inside ada's window")
        under_way = await wait_for(store, "SELECT * FROM projections.operations WHERE key = 'customer-42'"
                                          " AND operation_id = 'op-2' AND NOT in_window")  # fmt: skip
        assert under_way[0]["state"] == "open"
        assert await registered(store, "customer-42", "bob", "op-4", window_s=0.1, ttl_s=30)  # ada's window closed
        expired = await wait_for(store, "SELECT * FROM projections.operations WHERE state = 'expired'")
        assert [(row["key"], row["operation_id"], row["agent_id"]) for row in expired] == [("customer-42", "op-1",
                                                                                              "ada")]  # fmt: skip
        assert "TTL of 0.4 s" in str(expired[0]["end_reason"])
        await asyncio.sleep(0.5)  # op-3's expiry timer fired after it was finished: nothing to expire
        await caught_up(store, (*PROJECTIONS, OperationExpiry.name))
        rows = await store.pool.fetch("SELECT key, operation_id, state, end_reason FROM projections.operations"
                                      " ORDER BY key, operation_id")  # fmt: skip
        assert [tuple(row) for row in rows] == [
            ("customer-42", "op-1", "expired", "not finished within its TTL of 0.4 s"),
            ("customer-42", "op-2", "open", None),
            ("customer-42", "op-4", "open", None),
            ("order-7", "op-3", "finished", "shipped"),
        ]
        order = [event.event_type for event in await store.read_stream(operation_stream("order-7"))]
        assert order.count("OperationExpired") == 0 and order.count("TimerFired") == 2
        under_way_report = await store.pool.fetch("SELECT operation_id FROM reports.operations_under_way")
        assert sorted(row["operation_id"] for row in under_way_report) == ["op-2", "op-4"]
        checkpoint = await recorder.select_checkpoint(store.pool, OperationExpiry.name)
    assert checkpoint is not None
    assert await verify_decider(store, OperationExpiry(), until=checkpoint) == []
    assert (await verify(store, installed_projections().found["operations"])).differences == []
