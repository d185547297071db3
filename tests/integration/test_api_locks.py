"""Locks and claims through the API over real connections (issue 12): 50 concurrent acquirers of one resource —
one holder at any instant, fencing tokens strictly increasing, a stale holder's release refused, expiry freeing
the lock — and claims that conflict by overlap, with locks, and hand off."""

from __future__ import annotations

import asyncio
import random

import httpx

from agentlog.eventstore import EventStore
from tests.support.api import RunningApi, api_running
from tests.support.coordination import settled

ACQUIRERS = 50
GRANTS = 20
"""The race runs until this many grants went round (every acquirer contending the whole time)."""


async def register(api: RunningApi, agent_id: str) -> httpx.AsyncClient:
    client = api.client("agent", agent_id)
    assert (await client.put(f"/agents/{agent_id}", json={})).status_code == 201
    return client


async def test_fifty_acquirers_one_holder_at_a_time_fencing_grows_stale_release_refused(store: EventStore) -> None:
    async with api_running(store) as api:
        clients = await asyncio.gather(*(register(api, f"agent-{n}") for n in range(ACQUIRERS)))
        holding: list[str] = []
        granted: list[int] = []
        refusals = 0

        async def work(agent_id: str, client: httpx.AsyncClient) -> None:
            nonlocal refusals
            while len(granted) < GRANTS:
                answer = await client.post("/locks/src/./shared.py", json={"ttl_s": 30, "reason": agent_id})
                if answer.status_code == 409:
                    body = answer.json()
                    assert body["code"] == "held" and body["holder"].startswith("agent-"), body
                    refusals += 1
                    await asyncio.sleep(random.uniform(0.05, 0.3))  # contending, not flooding
                    continue
                assert answer.status_code == 201, answer.text
                grant = answer.json()
                assert not holding, f"{agent_id} got the lock while {holding} held it"
                holding.append(agent_id)
                granted.append(grant["fencing_token"])
                await asyncio.sleep(0.002)
                holding.remove(agent_id)
                released = await client.delete("/locks/src/shared.py", params={"fencing_token": grant["fencing_token"]})
                assert released.status_code == 200, released.text

        async with asyncio.timeout(120):
            await asyncio.gather(*(work(f"agent-{n}", c) for n, c in enumerate(clients)))
        assert granted == list(range(1, len(granted) + 1)), "fencing tokens did not grow by one per grant"
        assert refusals > len(granted), "nobody contended: the test proves nothing"

        # A stale holder's release (an old fencing token) is refused, and appends nothing.
        first, second = clients[0], clients[1]
        mine = (await first.post("/locks/src/shared.py", json={"ttl_s": 30})).json()
        assert (await first.delete("/locks/src/shared.py", params={"fencing_token": mine["fencing_token"]})).is_success
        theirs = (await second.post("/locks/src/shared.py", json={"ttl_s": 30})).json()
        assert theirs["fencing_token"] == mine["fencing_token"] + 1
        await settled(store)
        before = await api.event_count()
        stale = await first.delete("/locks/src/shared.py", params={"fencing_token": mine["fencing_token"]})
        assert stale.status_code == 409 and stale.json()["holder"] == "agent-1", stale.text
        wrong_token = await second.delete("/locks/src/shared.py", params={"fencing_token": mine["fencing_token"]})
        assert wrong_token.status_code == 409 and wrong_token.json()["fencing_token"] == theirs["fencing_token"]
        renew_by_other = await first.patch("/locks/src/shared.py", json={"fencing_token": theirs["fencing_token"]})
        assert renew_by_other.status_code == 409
        assert await api.event_count() == before, "a refused request appended something"
        for client in clients:
            await client.aclose()


async def test_expiry_frees_the_lock_with_the_reason_in_its_history(store: EventStore) -> None:
    async with api_running(store) as api:
        ada, bob = await register(api, "ada"), await register(api, "bob")
        grant = (await ada.post("/locks/docs/readme.md", json={"ttl_s": 0.4, "reason": "quick"})).json()
        assert (await bob.post("/locks/docs/readme.md", json={})).status_code == 409
        async with asyncio.timeout(10):
            while (answer := await bob.post("/locks/docs/readme.md", json={"ttl_s": 30})).status_code == 409:
                await asyncio.sleep(0.05)
        assert answer.status_code == 201 and answer.json()["fencing_token"] == grant["fencing_token"] + 1
        history = (await bob.get("/lock-history/docs/readme.md")).json()
        kinds = [item["event_type"] for item in history]
        assert kinds == [
            "LockAcquired",
            "TimerScheduled",
            "TimerFired",
            "LockExpired",
            "LockAcquired",
            "TimerScheduled",
        ]
        expired = history[3]["data"]
        assert expired["holder"] == "ada" and "TTL" in expired["reason"]
        late = await ada.delete("/locks/docs/readme.md", params={"fencing_token": grant["fencing_token"]})
        assert late.status_code == 409, "the expired holder released the new holder's lock"
        # Renewing keeps it past its first TTL.
        short = (await ada.post("/locks/a.py", json={"ttl_s": 0.6})).json()
        for _ in range(4):
            await asyncio.sleep(0.25)
            renewed = await ada.patch("/locks/a.py", json={"fencing_token": short["fencing_token"], "ttl_s": 0.6})
            assert renewed.status_code == 200, renewed.text
        assert (await bob.get("/locks/a.py")).json()["holder"] == "ada"
        await ada.aclose()
        await bob.aclose()


async def test_claims_conflict_by_overlap_and_with_locks_and_hand_off(store: EventStore) -> None:
    async with api_running(store) as api:
        ada, bob, cy = await register(api, "ada"), await register(api, "bob"), await register(api, "cy")
        made = await ada.post("/claims", json={"pattern": "src/parser/**", "ttl_s": 60, "reason": "refactor"})
        assert made.status_code == 201, made.text
        claim = made.json()
        await settled(store)
        before = await api.event_count()
        overlap = await bob.post("/claims", json={"pattern": "src/*/lexer.py", "exclusive": False})
        assert overlap.status_code == 409 and overlap.json()["conflicts"][0]["claim_id"] == claim["claim_id"]
        locked = await bob.post("/locks/src/parser/grammar.py", json={})
        assert locked.status_code == 409 and locked.json()["holder"] == "ada", "a lock inside another's claim"
        assert await api.event_count() == before
        assert (await bob.post("/claims", json={"pattern": "docs/**"})).status_code == 201
        assert (await cy.post("/locks/lib/util.py", json={})).status_code == 201
        await asyncio.sleep(0.3)  # the locks projection shows cy's lock
        with_lock = await bob.post("/claims", json={"pattern": "lib/**"})
        assert with_lock.status_code == 409 and with_lock.json()["conflicts"][0]["resource"] == "lib/util.py"
        handed = await ada.post(f"/claims/{claim['claim_id']}/handoff",
                                json={"to_agent": "bob", "note": "all yours", "context": {"step": 4}})  # fmt: skip
        assert handed.status_code == 200 and handed.json()["holder"] == "bob", handed.text
        async with asyncio.timeout(10):
            while not (inbox := (await bob.get("/agents/bob/inbox")).json())["messages"]:
                await asyncio.sleep(0.05)
        assert inbox["messages"][0]["data"]["handoff"]["context"] == {"step": 4}
        assert (await ada.delete(f"/claims/{claim['claim_id']}")).status_code == 409, "the old holder released it"
        assert (await bob.delete(f"/claims/{claim['claim_id']}")).status_code == 200
        assert (await cy.post("/claims", json={"pattern": "src/parser/x.py"})).status_code == 201
        for client in (ada, bob, cy):
            await client.aclose()
