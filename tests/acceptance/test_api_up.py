"""`agentlog up` serves the API on its port beside the documents (issue 12): OpenAPI, docs, and a lock taken and
expired through it, with the timer service and the expiry decider of the same process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from agentlog.domains.tasks.events import TaskCreated, task_stream
from agentlog.eventstore import EventStore
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import RunningSystem, token_for


async def test_up_serves_the_api_beside_the_documents(database_url: str, tmp_path: Path) -> None:
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1").start()
    try:
        base = system.document_url.replace("ws://", "http://").removesuffix("/doc")
        token = await token_for(database_url, "claude-1", "agent")
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}, "the documents' own routes still answer"
            assert (await http.get("/openapi.json")).json()["info"]["title"] == "agentlog"
            assert (await http.put("/api/v1/agents/claude-1", json={})).status_code == 201
            grant = await http.post("/api/v1/locks/src/main.py", json={"ttl_s": 0.5})
            assert grant.status_code == 201, grant.text
            async with asyncio.timeout(20):
                while (await http.get("/api/v1/locks/src/main.py")).json()["holder"] is not None:
                    await asyncio.sleep(0.1)
            history = (await http.get("/api/v1/lock-history/src/main.py")).json()
            assert history[-1]["event_type"] == "LockExpired"
    finally:
        assert system.stop() == 0


async def test_up_dispatches_tasks_to_registered_agents(database_url: str, tmp_path: Path) -> None:
    """The dispatcher runs in `up` (issue 13): a task appended to the log is assigned to the agent registered with
    its capability, and the tasks projection shows it."""
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1").start()
    try:
        base = system.document_url.replace("ws://", "http://").removesuffix("/doc")
        token = await token_for(database_url, "worker-1", "agent")
        async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
            registered = await http.put("/api/v1/agents/worker-1", json={"capabilities": ["scrape"]})
            assert registered.status_code == 201, registered.text
        async with EventStore.open(database_url) as store:
            await store.append(task_stream("t1"), [TaskCreated(task_id="t1", task_type="scrape",
                                                               capabilities=["scrape"])], 0)  # fmt: skip
            async with asyncio.timeout(20):
                while True:
                    row = await store.pool.fetchrow(
                        "SELECT status, agent_id, attempt FROM projections.tasks WHERE task_id = $1", "t1"
                    )
                    if row is not None and row["status"] == "assigned":
                        break
                    await asyncio.sleep(0.1)
            assert (row["agent_id"], row["attempt"]) == ("worker-1", 1)
    finally:
        assert system.stop() == 0
