"""The task dispatcher and the tasks and budgets projections over a real log: a task created, assigned by the
dispatcher, worked on, a silent attempt failed by its heartbeat timer and retried, a stale completion refused;
budgets reserved, settled and warned; and rebuilds that agree with what the live runner built."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from agentlog.domains.budgets import ledger as budget_rules
from agentlog.domains.budgets.events import budget_stream
from agentlog.domains.coordination.events import AgentRegistered
from agentlog.domains.coordination.names import member_stream
from agentlog.domains.tasks.events import TaskCompleted, TaskCreated, TaskStarted, task_stream
from agentlog.domains.tasks.lifecycle import TaskLifecycle, check, refusal_event
from agentlog.eventstore import ANY, EventStore
from agentlog.handlers import HandlerRunner
from agentlog.handlers.decider import verify_decider
from agentlog.handlers.tasks.dispatcher import Dispatcher
from agentlog.projections import installed_projections
from agentlog.projections.replay import verify
from tests.support.hosting import hosted

PROJECTIONS = ("tasks", "budgets", "timers")


@asynccontextmanager
async def orchestration_running(store: EventStore) -> AsyncIterator[HandlerRunner]:
    async with hosted(store, [Dispatcher()], PROJECTIONS) as runner:
        yield runner


async def row_when(store: EventStore, sql: str, *args: object, timeout: float = 15) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            row = await store.pool.fetchrow(sql, *args)
            if row is not None:
                return dict(row)
            await asyncio.sleep(0.02)


async def task_of(store: EventStore, task_id: str) -> TaskLifecycle:
    task = TaskLifecycle()
    for recorded in await store.read_stream(task_stream(task_id)):
        task.fold(store.decode(recorded))
    return task


async def test_a_silent_attempt_is_retried_as_a_new_one_and_its_late_completion_refused(store: EventStore) -> None:
    async with orchestration_running(store):
        await store.append(member_stream("ada"), [AgentRegistered(agent_id="ada", capabilities=["python"])], 0)
        created = TaskCreated(task_id="t1", task_type="lint", payload={"path": "src"}, capabilities=["python"],
                              heartbeat_interval_s=0.3, backoff_base_s=0.2, backoff_max_s=0.2)  # fmt: skip
        await store.append(task_stream("t1"), [created], 0)
        await row_when(store, "SELECT 1 FROM projections.tasks WHERE task_id = 't1' AND status = 'assigned'")
        # ada never starts nor beats: the heartbeat check fails attempt 1 within ~0.6 s, the retry assigns attempt 2
        row = await row_when(store, "SELECT * FROM projections.tasks WHERE task_id = 't1' AND attempt = 2")
        assert (row["attempts_spent"], row["agent_id"], row["payload"]) == (1, "ada", {"path": "src"})
        assert "no start or heartbeat" in str(row["last_error"])
        task = await task_of(store, "t1")
        late = TaskCompleted(task_id="t1", attempt=1, agent_id="ada", result={"late": True})
        refusal = check(task, late)
        assert refusal is not None and refusal.rule == "stale-attempt"
        await store.append(task_stream("t1"), [refusal_event(task, late, refusal)], ANY)
        await store.append(task_stream("t1"), [TaskStarted(task_id="t1", attempt=2, agent_id="ada"),
                                               TaskCompleted(task_id="t1", attempt=2, agent_id="ada",
                                                             result={"ok": True})], ANY)  # fmt: skip
        row = await row_when(store, "SELECT * FROM projections.tasks WHERE task_id = 't1' AND status = 'completed'")
        assert (row["result"], row["refusals"]) == ({"ok": True}, 1)
        agents = await row_when(store, "SELECT * FROM reports.task_agents WHERE agent_id = 'ada'")
        assert (agents["total"], agents["completed"]) == (1, 1)
        position = await store.head()
    assert await verify_decider(store, Dispatcher(), until=position) == []
    installed = installed_projections().found
    for name in ("tasks", "budgets"):
        assert (await verify(store, installed[name])).differences == [], name


async def test_the_budgets_projection_shows_the_period_and_its_warnings(store: EventStore) -> None:
    at = datetime(2026, 12, 2, 9, tzinfo=UTC)
    async with orchestration_running(store):
        stream = budget_stream("global")
        await store.append(stream, budget_rules.set_limit(budget_rules.BudgetLedger(), "global", 100_000,
                                                          "2026-12-02", time_zone="Europe/Paris"), 0)  # fmt: skip
        ledger = budget_rules.fold_all([store.decode(r) for r in await store.read_stream(stream)])
        reserved = budget_rules.reserve(ledger, "r1", 80_000, ledger.period_at(at), agent_id="ada")
        await store.append(stream, reserved, 1)
        ledger = budget_rules.fold_all(reserved, ledger)
        await store.append(stream, budget_rules.settle(ledger, "r1", 30_000, ledger.period_at(at)), 1 + len(reserved))
        row = await row_when(store, "SELECT * FROM projections.budgets WHERE settled_tokens = 30000")
        assert (row["period"], row["remaining_tokens"], row["reserved_tokens"], row["warned"]) == (
            "2026-12-02", 70_000, 0, [50, 75])  # fmt: skip
    installed = installed_projections().found
    assert (await verify(store, installed["budgets"])).differences == []
