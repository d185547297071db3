"""The planner under a real `agentlog up` (issue 14, seed 004): a person asks from the terminal (`agentlog chat`) and
sees the plan, the executor, the tool calls and the answer; `up` killed with SIGKILL mid-plan and started again
completes the plan from the log with no step and no write done twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from agentlog.eventstore import EventStore
from agentlog.planning.verify import verify_sessions
from tests.acceptance.test_cli import AGENTLOG, ROOT, environment
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import RunningSystem, query, token_for, wait_until

pytestmark = pytest.mark.slow
LISBON = "Create tasks for the Lisbon trip and schedule a reminder"


def api_of(system: RunningSystem) -> str:
    return system.document_url.replace("ws://", "http://").removesuffix("/doc")


async def test_a_person_asks_from_the_terminal_and_watches_the_plan_run(database_url: str, tmp_path: Path) -> None:
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log").start()
    try:
        token = await token_for(database_url, "ana", "person")
        env = environment(AGENTLOG_URL=api_of(system), AGENTLOG_TOKEN=token)

        def chat(*arguments: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*AGENTLOG, "chat", *arguments], env=env, cwd=ROOT, capture_output=True,
                                  text=True, timeout=120, check=False)  # fmt: skip

        shown = await asyncio.to_thread(chat, "trip", LISBON)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout
        for expected in ("analysis complex", "plan plan-", "executor spawned", "→ search_memories", "→ create_task",
                         "step completed s3", "plan completed", "answer Done."):  # fmt: skip
            assert expected in out, out
        as_json = await asyncio.to_thread(chat, "trip", "Which tasks are in the queue?", "--json")
        assert as_json.returncode == 0, as_json.stderr
        assert '"event": "done"' in as_json.stdout and "list_tasks found 5" in as_json.stdout, as_json.stdout
        other = environment(AGENTLOG_URL=api_of(system), AGENTLOG_TOKEN=await token_for(database_url, "bo", "person"))
        refused = await asyncio.to_thread(
            lambda: subprocess.run([*AGENTLOG, "chat", "trip", "hello"], env=other, cwd=ROOT, capture_output=True,
                                   text=True, timeout=60, check=False))  # fmt: skip
        assert refused.returncode != 0 and "ana's" in refused.stderr, refused.stderr
    finally:
        assert system.stop() == 0


async def test_up_killed_mid_plan_completes_it_after_a_restart_with_nothing_done_twice(
    database_url: str, tmp_path: Path
) -> None:
    home = with_gazetteer_index(tmp_path / "home")
    slow = {"planner_local_delay_s": "0.3"}  # a model call takes a while: `up` is killed between two of them
    system = RunningSystem(database_url, home, tmp_path / "up.log", **slow).start()
    killed = False
    try:
        token = await token_for(database_url, "ana", "person")
        async with httpx.AsyncClient(base_url=f"{api_of(system)}/api/v1", timeout=30,
                                     headers={"authorization": f"Bearer {token}"}) as client:  # fmt: skip
            posted = await client.post("/sessions/trip/messages", json={"content": LISBON})
            assert posted.status_code == 202, posted.text
        await wait_until(database_url, "SELECT 1 FROM agentlog.events WHERE event_type = 'ToolAnswered' "
                         "AND data->>'tool' = 'create_task'", timeout=60)  # fmt: skip
        system.stop(signal.SIGKILL)
        killed = True
        done = await _count(database_url, "TurnFinished")
        assert done == 0, "the plan was over before the kill: nothing was tested"
        system = RunningSystem(database_url, home, tmp_path / "up.log").start()
        killed = False
        await wait_until(database_url, "SELECT 1 FROM agentlog.events WHERE event_type = 'TurnFinished'", timeout=90)
        async with EventStore.open(database_url) as store:
            events = [store.decode(r) for r in await store.read_stream("session-trip")]
        finished = [e for e in events if e.event_type == "TurnFinished"]
        assert [e.status for e in finished] == ["done"]  # type: ignore[attr-defined]
        started = Counter(e.step_id for e in events if e.event_type == "StepStarted")  # type: ignore[attr-defined]
        assert started == {"s1": 1, "s2": 1, "s3": 1}
        answered = Counter((e.step_id, e.call_id) for e in events if e.event_type == "ToolAnswered")  # type: ignore[attr-defined]
        assert set(answered.values()) == {1}
        # The four the planner wrote, and the executor's step as a task of the queue.
        assert await _count(database_url, "TaskCreated") == 5, "a write was done twice (or not at all)"
        assert await _count(database_url, "TaskCompleted") == 1, "the executor's step task, completed once"
        async with EventStore.open(database_url) as store:
            assert await verify_sessions(store) == (1, []), "what `replay --verify` checks: the rule was followed"
    finally:
        if not killed:
            assert system.stop() == 0


async def _count(database_url: str, event_type: str) -> int:
    rows = await query(database_url, "SELECT count(*) FROM agentlog.events WHERE event_type = $1", event_type)
    return int(rows[0][0])
