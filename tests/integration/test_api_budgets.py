"""Token budgets through the API over real connections (issue 13): 16 agents reserving against one budget at
once never overspend it at any instant (LiteLLM #34732, #40095: concurrent first requests bypassed the budget), each
warning threshold is one event, a refusal names the budget and what is left, an agent's own limit holds beside the
global one, and bad input appends nothing."""

from __future__ import annotations

import asyncio
import random

import httpx

from agentlog.domains.budgets.events import BudgetWarning
from agentlog.domains.budgets.ledger import BudgetLedger
from agentlog.eventstore import EventStore
from agentlog.handlers.budgets.keeper import BudgetKeeper
from tests.support.api import RunningApi, api_running
from tests.support.coordination import settled
from tests.support.hosting import hosted

AGENTS = 16
LIMIT = 20_000


async def agent(api: RunningApi, agent_id: str) -> httpx.AsyncClient:
    client = api.client("agent", agent_id)
    assert (await client.put(f"/agents/{agent_id}", json={})).status_code == 201
    return client


async def test_sixteen_agents_never_overspend_and_each_warning_is_given_once(store: EventStore) -> None:
    async with api_running(store) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": LIMIT})).status_code == 200
        clients = await asyncio.gather(*(agent(api, f"agent-{n}") for n in range(AGENTS)))
        refusals: list[dict[str, object]] = []

        async def spend(client: httpx.AsyncClient) -> None:
            rng = random.Random(id(client))
            while len(refusals) < 3 * AGENTS:
                answer = await client.post("/budgets/reservations", json={"tokens": rng.randint(100, 900)})
                if answer.status_code == 409:
                    refusals.append(answer.json())
                    await asyncio.sleep(0.01)
                    continue
                assert answer.status_code == 201, answer.text
                reservation = answer.json()
                await asyncio.sleep(rng.uniform(0, 0.01))
                if rng.random() < 0.2:
                    closed = await client.post(f"/budgets/reservations/{reservation['reservation_id']}/release",
                                               json={})  # fmt: skip
                else:
                    used = rng.randint(0, reservation["tokens"])
                    closed = await client.post(
                        f"/budgets/reservations/{reservation['reservation_id']}/settle", json={"used_tokens": used}
                    )
                assert closed.status_code == 200, closed.text

        async with asyncio.timeout(120):
            await asyncio.gather(*(spend(client) for client in clients))
        refusal = refusals[0]
        assert refusal["code"] == "budget_exceeded" and refusal["budget_id"] == "global", refusal
        assert "tokens left" in str(refusal["detail"]) and isinstance(refusal["remaining_tokens"], int)

        # At every instant of the log (each event in turn), settled + open reservations <= the limit.
        ledger = BudgetLedger()
        warnings = []
        for recorded in await store.read_stream("budget-global"):
            event = store.decode(recorded)
            ledger.fold(event)
            assert ledger.committed <= LIMIT, f"overspent at version {recorded.stream_version}: {ledger.committed}"
            if isinstance(event, BudgetWarning):
                warnings.append(event.threshold)
        assert ledger.settled > LIMIT // 2, "the agents hardly spent: the race proves nothing"
        assert sorted(warnings) == [50, 75, 90][: len(warnings)] and len(set(warnings)) == len(warnings), warnings
        assert 50 in warnings and 75 in warnings

        await settled(store)
        shown = (await admin.get("/budgets/global")).json()
        assert shown["settled_tokens"] == ledger.settled and shown["open_reservations"] == 0
        assert sorted(shown["warned"]) == sorted(warnings)


async def test_agent_limit_holds_beside_the_global_one_and_none_is_held_when_one_refuses(store: EventStore) -> None:
    async with api_running(store) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 10_000})).status_code == 200
        assert (await admin.put("/budgets/agent-small", json={"limit_tokens": 500})).status_code == 200
        small = await agent(api, "small")
        held = await small.post("/budgets/reservations", json={"tokens": 400})
        assert held.status_code == 201, held.text
        assert {left["budget_id"]: left["remaining_tokens"] for left in held.json()["budgets"]} == {
            "global": 9_600, "agent-small": 100,
        }  # fmt: skip
        too_much = await small.post("/budgets/reservations", json={"tokens": 200})
        assert too_much.status_code == 409 and too_much.json()["budget_id"] == "agent-small", too_much.text
        assert too_much.json()["remaining_tokens"] == 100
        assert (await admin.get("/budgets/global")).json()["reserved_tokens"] == 400, "the refused one held tokens"

        # Used beyond the reservation: charged as far as the agent's budget goes, the rest reported.
        settled_answer = await small.post(
            f"/budgets/reservations/{held.json()['reservation_id']}/settle", json={"used_tokens": 700}
        )
        assert settled_answer.status_code == 200, settled_answer.text
        assert settled_answer.json()["unbudgeted_tokens"] == 200
        reservation_id = held.json()["reservation_id"]
        again = await small.post(f"/budgets/reservations/{reservation_id}/settle", json={"used_tokens": 1})
        assert again.status_code == 404

        # Another agent's reservation is not mine to settle.
        other = await agent(api, "other")
        theirs = (await other.post("/budgets/reservations", json={"tokens": 10})).json()
        stolen = await admin.post(
            f"/budgets/reservations/{theirs['reservation_id']}/settle", json={"agent_id": "small", "used_tokens": 1}
        )
        assert stolen.status_code == 403 and "other's" in stolen.json()["detail"], stolen.text


async def test_an_expired_reservation_is_given_back(store: EventStore) -> None:
    async with api_running(store) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
        worker = await agent(api, "worker")
        assert (await worker.post("/budgets/reservations", json={"tokens": 900, "ttl_s": 0.2})).status_code == 201
        async with asyncio.timeout(20):
            while (await admin.get("/budgets/global")).json()["reserved_tokens"] != 0:
                await asyncio.sleep(0.05)
        assert (await worker.post("/budgets/reservations", json={"tokens": 900})).status_code == 201


async def test_a_reservation_id_used_again_gets_its_own_expiry(store: EventStore) -> None:
    """A caller may name its reservations, and may name a new one as an old one it closed. Each must be guarded by
    its own timer: the old one's timer must not give back the new reservation early (it did: both timers had one
    id), and the new one's must fire at all (it did not: its firing had the old firing's event id)."""
    async with api_running(store) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
        worker = await agent(api, "worker")

        async def reserved_tokens() -> int:
            found: int = (await admin.get("/budgets/global")).json()["reserved_tokens"]
            return found

        short = {"reservation_id": "r1", "tokens": 100, "ttl_s": 0.5}
        assert (await worker.post("/budgets/reservations", json=short)).status_code == 201
        assert (await worker.post("/budgets/reservations/r1/settle", json={"used_tokens": 10})).status_code == 200
        long = {"reservation_id": "r1", "tokens": 200, "ttl_s": 600}
        assert (await worker.post("/budgets/reservations", json=long)).status_code == 201
        await asyncio.sleep(2)  # the first r1's timer fires
        await settled(store)
        assert await reserved_tokens() == 200, "the first r1's timer gave back the second r1"
        assert (await worker.post("/budgets/reservations/r1/release", json={})).status_code == 200

        assert (await worker.post("/budgets/reservations", json=short)).status_code == 201
        async with asyncio.timeout(20):
            while await reserved_tokens() != 0:  # r1 again, with a short TTL once more: it expires
                await asyncio.sleep(0.05)
        again = {"reservation_id": "r1", "tokens": 300, "ttl_s": 0.5}
        assert (await worker.post("/budgets/reservations", json=again)).status_code == 201
        async with asyncio.timeout(20):
            while await reserved_tokens() != 0:
                await asyncio.sleep(0.05)


async def test_an_expiry_decided_late_for_an_old_reservation_leaves_a_new_one_alone(store: EventStore) -> None:
    """The keeper is behind: r1's timer fires, its caller settles it after all and makes a new r1. The keeper then
    decides the expiry of the old r1, which lands after the new one: it must not give the new one back."""
    async with api_running(store, without=frozenset({BudgetKeeper.name})) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
        worker = await agent(api, "worker")
        first = {"reservation_id": "r1", "tokens": 100, "ttl_s": 0.2}
        assert (await worker.post("/budgets/reservations", json=first)).status_code == 201
        async with asyncio.timeout(20):
            while "TimerFired" not in [event.event_type for event in await store.read_stream("budget-global")]:
                await asyncio.sleep(0.05)
        assert (await worker.post("/budgets/reservations/r1/settle", json={"used_tokens": 10})).status_code == 200
        second = {"reservation_id": "r1", "tokens": 500, "ttl_s": 600}
        assert (await worker.post("/budgets/reservations", json=second)).status_code == 201
        async with hosted(store, [BudgetKeeper()], []):
            await settled(store, without=frozenset({BudgetKeeper.name}))
            async with asyncio.timeout(20):
                while "ReservationExpired" not in [e.event_type for e in await store.read_stream("budget-global")]:
                    await asyncio.sleep(0.05)
        await settled(store, without=frozenset({BudgetKeeper.name}))
        shown = (await admin.get("/budgets/global")).json()
        assert (shown["reserved_tokens"], shown["settled_tokens"]) == (500, 10), shown
        assert (await worker.post("/budgets/reservations/r1/settle", json={"used_tokens": 400})).status_code == 200


async def test_bad_budget_input_is_refused_and_appends_nothing(store: EventStore) -> None:
    async with api_running(store) as api:
        admin, person = api.client("admin", "root"), api.client("person", "ada")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
        worker = await agent(api, "worker")
        assert (await worker.post("/budgets/reservations", json={"tokens": 600})).status_code == 201
        await settled(store)
        before = await api.event_count()

        below = await admin.put("/budgets/global", json={"limit_tokens": 500})
        assert below.status_code == 422 and below.json()["detail"][0]["loc"] == ["body", "limit_tokens"], below.text
        zone = await admin.put("/budgets/global", json={"limit_tokens": 5_000, "time_zone": "Mars/Olympus"})
        assert zone.status_code == 422 and zone.json()["detail"][0]["loc"] == ["body", "time_zone"], zone.text
        assert (await admin.put("/budgets/global", json={"limit_tokens": -1})).status_code == 422
        assert (await admin.put("/budgets/global", json={"limit_tokens": 5, "reset_hour": 24})).status_code == 422
        assert (await admin.put("/budgets/nobody", json={"limit_tokens": 5})).status_code == 422
        assert (await person.put("/budgets/global", json={"limit_tokens": 5_000})).status_code == 403
        assert (await worker.post("/budgets/reservations", json={"tokens": 0})).status_code == 422
        assert (await worker.post("/budgets/reservations", json={"tokens": 500})).status_code == 409
        assert (await person.post("/budgets/reservations", json={"tokens": 5})).status_code == 403
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"
