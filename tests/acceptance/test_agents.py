"""Documents and agents end to end, as a user would: `agentlog up` processes, WebSocket clients, worker processes.

People open documents over real WebSockets (pycrdt as a y-websocket client, and the npm `yjs` + `y-websocket`
client run by Node); the system spawns real worker processes that mark places in the documents; tests kill
workers and managers with SIGKILL and read what happened from the projections, as an operator would from psql.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentlog.domains.budgets.events import BudgetSet, budget_stream
from agentlog.eventstore import ANY, EventStore, NewEvent
from tests.integration.test_openai_provider import API_KEY, MODEL, PARIS, FakeLLM, _app
from tests.support.asgi import serving
from tests.support.node_client import node_available, run_yjs_client
from tests.support.system import ROOT, RunningSystem, open_document, query, token_for, wait_until

pytestmark = pytest.mark.slow

FAST = {"idle_grace_s": "1", "ping_s": "1", "metrics_s": "0.5", "restart_backoff_s": "0.2"}
SENTENCE = "We flew from Paris to Tokyo."


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """Shared by the module's systems: workers build the gazetteer index there once."""
    with tempfile.TemporaryDirectory(prefix="agentlog-agents-") as directory:
        yield Path(directory)


@pytest.fixture
def system(database_url: str, home: Path, tmp_path: Path) -> Iterator[RunningSystem]:
    running = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1", **FAST).start()
    yield running
    running.stop()


def worker_alive(pid: int, agent_id: str) -> bool:
    """Whether `pid` is still an agent worker: started for this agent, or started warm and assigned to it."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":  # exited, not yet reaped
        return False
    return b"agentlog.agents.worker" in arguments and (
        agent_id.encode() in arguments or any(argument.startswith(b"--standby-of=") for argument in arguments)
    )


def standby_workers(manager_id: str, database_url: str) -> list[int]:
    """Processes started warm for this manager and not assigned yet (or assigned: the command line stays), on this
    test's database (from the environment they inherited): not another test run's manager of the same name."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"--standby-of={manager_id}".encode() in arguments and (
                f"AGENTLOG_DATABASE_URL={database_url}".encode() in environment
            ):
                found.append(int(entry.name))
    return found


def places(marks: list[tuple[str, dict[str, object]]]) -> set[str]:
    return {name for name, _ in marks}


async def agent_rows(database_url: str, document_id: str) -> list[dict[str, object]]:
    rows = await query(
        database_url,
        "SELECT * FROM projections.agent_connections WHERE document_id = $1 ORDER BY requested_at",
        document_id,
    )
    return [dict(row) for row in rows]


async def test_an_agent_marks_places_and_detaches_after_the_grace(system: RunningSystem, database_url: str) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "trip", token) as ada:
        ada.type_paragraph(SENTENCE)
        marks = await ada.wait_for_marks(2)
        assert places(marks) == {"Paris", "Tokyo"}
        paris = dict(marks)["Paris"]
        assert abs(float(paris["lat"]) - 48.85) < 0.1 and abs(float(paris["lon"]) - 2.35) < 0.1  # type: ignore[arg-type]
        (agent,) = await wait_until(
            database_url,
            "SELECT * FROM projections.agent_connections WHERE document_id = 'trip' AND status = 'active'"
            " AND locations_marked_count = 2",
        )
        assert agent["llm_calls_count"] == 1 and agent["tokens_spent"] > 0 and agent["agent_pid"] > 0
        assert agent["manager_id"] == "m1"
        await wait_until(database_url, "SELECT 1 FROM projections.agent_metrics WHERE agent_id = $1", agent["agent_id"])
    # Back within the grace: the document stays active and keeps its agent.
    async with open_document(system.document_url, "trip", token) as ada:
        await asyncio.sleep(0.3)
    idle_row = await wait_until(
        database_url, "SELECT * FROM projections.agent_connections WHERE status = 'disconnected'", timeout=20
    )
    assert idle_row[0]["agent_id"] == agent["agent_id"] and idle_row[0]["end_reason"] == "the document became idle"
    history = await query(
        database_url,
        "SELECT event_type FROM projections.document_activity WHERE document_id = 'trip' ORDER BY global_position",
    )
    kinds = [row["event_type"] for row in history]
    # The second socket may be recorded as joined before the first as left (two sockets, one after the other):
    # either way the document was active once, stayed active, and went idle once at the end.
    assert kinds[:2] == ["user_joined", "active"] and kinds[-1] == "idle"
    assert sorted(kinds[2:-1]) == ["user_joined", "user_left", "user_left"]
    (stats,) = await query(database_url, "SELECT * FROM reports.agent_system_stats")
    assert (stats["total_agents"], stats["running_agents"], stats["unique_documents"]) == (1, 0, 1)
    assert (stats["total_llm_calls"], stats["total_locations"]) == (1, 2)
    assert system.stop() == 0
    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentlog.cli", "replay", "--verify"],
        env=system.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "decider document-activity: refolded over the log; every decision matches" in verified.stdout
    assert "decider agent-manager: refolded over the log; every decision matches" in verified.stdout


async def test_bad_tokens_are_refused_with_a_reason_and_append_nothing(
    system: RunningSystem, database_url: str
) -> None:
    expired = await token_for(database_url, "ada", ttl_s=0.5)
    await asyncio.sleep(1.1)
    valid = await token_for(database_url, "ada")
    forged = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    cases = [("", "no token"), ("?token=nonsense", "unknown token format"), (f"?token={forged}", "bad signature"),
             (f"?token={expired}", "expired token")]  # fmt: skip
    for query_string, reason in cases:
        async with connect(f"{system.document_url}/secret{query_string}") as websocket:
            with pytest.raises(ConnectionClosed) as closed:
                await websocket.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401 and reason in closed.value.rcvd.reason
    agent_token = await token_for(database_url, "intruder", "agent", document_id="other")
    async with connect(f"{system.document_url}/secret?token={agent_token}") as websocket:
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert await query(database_url, "SELECT 1 FROM agentlog.events WHERE stream_id = 'document-secret'") == []


async def test_garbage_closes_only_its_socket(system: RunningSystem, database_url: str) -> None:
    ada_token, bob_token = await token_for(database_url, "ada"), await token_for(database_url, "bob")
    async with (
        open_document(system.document_url, "shared", ada_token) as ada,
        open_document(system.document_url, "shared", bob_token) as bob,
    ):
        async with connect(f"{system.document_url}/shared?token={bob_token}") as rogue:
            await rogue.recv()  # the server's sync step 1
            await rogue.send(b"\x00\x07\xff\xff\xff garbage")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await rogue.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        ada.type_paragraph("Then we drove to Berlin.")
        assert places(await bob.wait_for_marks(1)) == {"Berlin"}


async def test_the_first_agent_is_a_worker_that_was_already_started_and_waiting(
    system: RunningSystem, database_url: str
) -> None:
    (waiting,) = standby_workers("m1", database_url)
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "warm", token) as ada:
        (agent,) = await wait_until(
            database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_pid > 0"
        )
        assert agent["agent_pid"] == waiting, "the agent was not the worker waiting for it"
        ada.type_paragraph("Warm start in Lisbon.")
        assert places(await ada.wait_for_marks(1)) == {"Lisbon"}
        async with asyncio.timeout(20):  # and the next one is on its way
            while not set(standby_workers("m1", database_url)) - {waiting}:
                await asyncio.sleep(0.1)
    assert system.stop() == 0
    assert standby_workers("m1", database_url) == [], "a standby worker outlived its manager"


async def test_a_killed_worker_is_respawned(system: RunningSystem, database_url: str) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "crash", token) as ada:
        (first,) = await wait_until(
            database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_pid > 0"
        )
        os.kill(first["agent_pid"], signal.SIGKILL)
        (second,) = await wait_until(
            database_url,
            "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_id <> $1",
            first["agent_id"],
        )
        assert second["attempt"] == 2 and second["document_id"] == "crash"
        ada.type_paragraph("The replacement marks Rome.")
        assert places(await ada.wait_for_marks(1)) == {"Rome"}
    rows = {row["agent_id"]: row for row in await agent_rows(database_url, "crash")}
    assert rows[first["agent_id"]]["status"] == "error"
    assert "SIGKILL" in str(rows[first["agent_id"]]["end_reason"])


async def test_a_killed_manager_reconciles_when_it_restarts(database_url: str, home: Path, tmp_path: Path) -> None:
    first = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1", **FAST).start()
    token = await token_for(database_url, "ada")
    async with open_document(first.document_url, "survivor", token) as before:
        before.type_paragraph("Written before the crash in Oslo.")
        await before.wait_for_marks(1)
        (agent,) = await wait_until(database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
        first.stop(signal.SIGKILL)
    second = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1", **FAST).start()
    try:
        second.wait_for_log(lambda line: line.get("event") == "manager.reconciled", 20)
        (old,) = await wait_until(
            database_url,
            "SELECT * FROM projections.agent_connections WHERE agent_id = $1 AND status = 'disconnected'",
            agent["agent_id"],
        )
        assert "its manager restarted" in old["end_reason"]
        assert not worker_alive(agent["agent_pid"], agent["agent_id"])  # it left when its supervisor died
        async with open_document(second.document_url, "survivor", token) as ada:  # people reconnect
            assert places(ada.marks()) == {"Oslo"}  # the content, marks included, survived in PostgreSQL
            ada.type_paragraph("Back in Madrid.")
            assert places(await ada.wait_for_marks(2)) == {"Oslo", "Madrid"}
    finally:
        assert second.stop() == 0


async def test_two_managers_share_the_work_and_take_over_from_a_dead_one(
    database_url: str, home: Path, tmp_path: Path
) -> None:
    m1 = RunningSystem(database_url, home, tmp_path / "m1.log", manager_id="m1", max_agents="2", **FAST).start()
    m2 = RunningSystem(database_url, home, tmp_path / "m2.log", manager_id="m2", max_agents="2", **FAST).start()
    try:
        token = await token_for(database_url, "ada")
        async with (
            open_document(m2.document_url, "alpha", token),
            open_document(m2.document_url, "beta", token),
        ):
            running = await wait_until(
                database_url,
                "SELECT count(*) FROM projections.agent_connections WHERE status = 'active' HAVING count(*) = 2",
            )
            rows = await query(
                database_url,
                "SELECT document_id, manager_id, agent_id FROM projections.agent_connections WHERE status = 'active'",
            )
            assert sorted(row["manager_id"] for row in rows) == ["m1", "m2"]  # spread by load
            spawns = await query(
                database_url,
                "SELECT data->>'document_id' AS document, count(*) FROM agentlog.events"
                " WHERE event_type = 'AgentSpawnRequested' GROUP BY 1 ORDER BY 1",
            )
            assert [(row["document"], row["count"]) for row in spawns] == [("alpha", 1), ("beta", 1)]
            on_m1 = next(row for row in rows if row["manager_id"] == "m1")
            started = time.monotonic()
            m1.stop(signal.SIGKILL)
            (moved,) = await wait_until(
                database_url,
                "SELECT * FROM projections.agent_connections WHERE document_id = $1 AND manager_id = 'm2'"
                " AND status = 'active'",
                on_m1["document_id"],
                timeout=30,
            )
            assert moved["agent_id"] != on_m1["agent_id"]
            assert time.monotonic() - started < 20
            (lost,) = await query(database_url, "SELECT data FROM agentlog.events WHERE event_type = 'ManagerStopped'")
            assert '"lost"' in str(lost["data"])
        assert running
    finally:
        m2.stop()


@pytest.mark.skipif(not node_available(), reason="node and npm are needed for the y-websocket client")
async def test_a_real_yjs_client_sees_the_agents_marks(system: RunningSystem, database_url: str) -> None:
    token = await token_for(database_url, "grace")
    result = await run_yjs_client(
        system.document_url,
        "node-trip",
        token,
        mode="tiptap",
        sentence="From Lisbon we took a train to Porto.",
        expect_marks=2,
        timeout_s=45,
    )
    assert result.ok, result.describe()
    assert {mark["text"] for mark in result.marks} == {"Lisbon", "Porto"}
    assert all({"name", "lat", "lon"} <= set(mark["geo"]) for mark in result.marks)
    refused = await run_yjs_client(
        system.document_url,
        "node-trip",
        "forged",
        mode="tiptap",
        sentence="x",
        expect_marks=0,
        timeout_s=15,
        expect_close=True,
    )
    assert refused.closed is not None and refused.closed["code"] == 4401, refused.describe()


async def test_plain_text_documents(database_url: str, home: Path, tmp_path: Path) -> None:
    system = RunningSystem(
        database_url, home, tmp_path / "up.log", manager_id="m1", document_layout="text", **FAST
    ).start()
    try:
        token = await token_for(database_url, "ada")
        async with open_document(system.document_url, "notes", token, layout="text") as ada:
            ada.type_paragraph("Ça commence à Zürich! Puis Wien.")
            marks = await ada.wait_for_marks(2)
            assert places(marks) == {"Zürich", "Wien"}
    finally:
        assert system.stop() == 0


async def test_the_least_recently_active_document_loses_its_agent_and_ctrl_c_detaches_all(
    database_url: str, home: Path, tmp_path: Path
) -> None:
    system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1", max_agents="1", **FAST).start()
    token = await token_for(database_url, "ada")
    try:
        async with open_document(system.document_url, "older", token):
            (older,) = await wait_until(
                database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active'"
            )
            async with open_document(system.document_url, "newer", token) as person:
                (newer,) = await wait_until(
                    database_url,
                    "SELECT * FROM projections.agent_connections WHERE status = 'active' AND document_id = 'newer'",
                )
                evicted = await agent_rows(database_url, "older")
                assert evicted[0]["status"] == "disconnected"
                assert "evicted" in str(evicted[0]["end_reason"]) and "newer" in str(evicted[0]["end_reason"])
                deferred = await query(
                    database_url,
                    "SELECT data->>'reason' AS reason FROM agentlog.events"
                    " WHERE event_type = 'AgentDeferred' AND stream_id = 'document-older'",
                )
                assert "more recently active" in deferred[0]["reason"]
                person.type_paragraph("Only the newer one marks Oslo.")
                assert places(await person.wait_for_marks(1)) == {"Oslo"}
                assert system.stop(signal.SIGINT) == 0
        rows = await query(
            database_url,
            "SELECT status, end_reason FROM projections.agent_connections WHERE agent_id = $1",
            newer["agent_id"],
        )
        assert rows[0]["status"] == "disconnected" and str(rows[0]["end_reason"]).startswith("manager shutdown")
        exits = await query(
            database_url,
            "SELECT data FROM agentlog.events WHERE event_type = 'AgentProcessExited' AND stream_id = $1",
            f"agent-{newer['agent_id']}",
        )
        assert len(exits) == 1 and "manager shutdown: detached" in str(exits[0]["data"])
        assert not worker_alive(newer["agent_pid"], newer["agent_id"])
        stopped = await query(
            database_url, "SELECT data->>'how' AS how FROM agentlog.events WHERE event_type = 'ManagerStopped'"
        )
        assert [row["how"] for row in stopped] == ["shutdown"]
        assert older["agent_id"] != newer["agent_id"]
    finally:
        system.stop()


async def test_a_hung_worker_misses_its_pongs_and_is_replaced(system: RunningSystem, database_url: str) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "hang", token):
        (first,) = await wait_until(
            database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_pid > 0"
        )
        os.kill(first["agent_pid"], signal.SIGSTOP)  # alive, but answers nothing
        (second,) = await wait_until(
            database_url,
            "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_id <> $1",
            first["agent_id"],
            timeout=30,
        )
    unresponsive = await query(database_url, "SELECT data FROM agentlog.events WHERE event_type = 'AgentUnresponsive'")
    assert len(unresponsive) == 1 and first["agent_id"] in str(unresponsive[0]["data"])
    assert not worker_alive(first["agent_pid"], first["agent_id"])
    assert second["attempt"] == 2


async def test_the_openai_compatible_provider_is_chosen_by_configuration(
    database_url: str, home: Path, tmp_path: Path
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake = FakeLLM(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
    fake.answer({**PARIS, "latitude": 48.0, "longitude": 2.0})
    async with serving(_app(fake), sock, lifespan="off", ws="none"):
        system = RunningSystem(
            database_url, home, tmp_path / "up.log", manager_id="m1", llm_provider="openai",
            llm_base_url=fake.base_url, llm_model=MODEL, llm_api_key=API_KEY, **FAST,
        ).start()  # fmt: skip
        try:
            token = await token_for(database_url, "ada")
            async with open_document(system.document_url, "llm", token) as ada:
                ada.type_paragraph("Paris in the spring.")
                ((name, geo),) = await ada.wait_for_marks(1)
                assert (name, geo["lat"], geo["lon"]) == ("Paris", 48.0, 2.0)  # the fake's answer, not the gazetteer's
            (spent,) = await wait_until(
                database_url, "SELECT data FROM agentlog.events WHERE event_type = 'TokensSpent'"
            )
            assert '"openai-compatible"' in str(spent["data"]) and '"prompt_tokens": 321' in str(spent["data"])
            assert fake.requests and fake.requests[0]["body"]["model"] == MODEL
        finally:
            assert system.stop() == 0
    sock.close()


# With a timeout, pg_terminate_backend waits for the session to end (and so for its advisory lock to be free); without
# one it returns once signalled, and a test taking the lock next would race the dying session.
LOCK_SESSION = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
    " WHERE application_name = 'agentlog manager m1' AND datname = current_database()"
)
TAKE_THE_LOCK = "SELECT pg_try_advisory_lock(1095524685, hashtext('manager.m1'))"


async def last_started(database_url: str) -> dict[str, object]:
    rows = await query(
        database_url,
        "SELECT data, (SELECT max(stream_version) FROM agentlog.events WHERE stream_id = 'manager-m1') AS version"
        " FROM agentlog.events WHERE stream_id = 'manager-m1' AND event_type = 'ManagerStarted'"
        " ORDER BY stream_version DESC LIMIT 1",
    )
    return {**json.loads(rows[0]["data"]), "version": rows[0]["version"]}


async def test_a_manager_that_loses_its_database_lock_takes_it_back_and_keeps_its_agents(
    system: RunningSystem, database_url: str
) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "fragile", token) as ada:
        (agent,) = await wait_until(database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
        await query(database_url, LOCK_SESSION)
        system.wait_for_log(lambda line: line.get("event") == "manager.reconnected", 20)
        ada.type_paragraph(SENTENCE)
        await ada.wait_for_marks(2)  # by the same agent, which never stopped
        assert worker_alive(agent["agent_pid"], agent["agent_id"])
    assert system.process is not None and system.process.poll() is None
    kinds = [row["event_type"] for row in await query(
        database_url, "SELECT event_type FROM agentlog.events WHERE stream_id = 'manager-m1' ORDER BY stream_version"
    )]  # fmt: skip
    assert kinds == ["ManagerStarted", "ManagerReconnected"]
    assert await query(database_url, "SELECT 1 FROM agentlog.events WHERE event_type = 'AgentProcessExited'") == []


async def test_a_manager_recorded_as_lost_while_cut_off_starts_a_new_incarnation(
    system: RunningSystem, database_url: str
) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "fragile", token):
        (agent,) = await wait_until(database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
        before = await last_started(database_url)
        holder = await asyncpg.connect(database_url)
        try:  # as a watcher would, while m1 cannot take its lock back: the lock is free, so m1 is lost
            await query(database_url, LOCK_SESSION)
            assert await holder.fetchval(TAKE_THE_LOCK)
            lost = {"manager_id": "m1", "incarnation": before["incarnation"], "how": "lost", "reason": "test"}
            await holder.execute(
                "SELECT agentlog.append_event('manager-m1', 'ManagerStopped', $1::jsonb, $2)",
                json.dumps(lost), before["version"],
            )  # fmt: skip
        finally:
            await holder.close()  # m1 can take its lock now, and finds itself recorded as lost
        system.wait_for_log(lambda line: line.get("event") == "manager.recorded_lost", 20)
        after = await wait_until(
            database_url,
            "SELECT * FROM projections.agent_connections WHERE status = 'active' AND agent_id <> $1",
            agent["agent_id"],
        )
        assert len(after) == 1 and after[0]["document_id"] == "fragile"  # a new agent, for the new incarnation
    assert (await last_started(database_url))["incarnation"] != before["incarnation"]
    assert not worker_alive(agent["agent_pid"], agent["agent_id"])
    assert system.process is not None and system.process.poll() is None


async def test_a_manager_whose_id_another_process_took_over_detaches_everything_and_stops(
    system: RunningSystem, database_url: str
) -> None:
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "fragile", token):
        (agent,) = await wait_until(database_url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
        before = await last_started(database_url)
        impostor = await asyncpg.connect(database_url)
        try:  # another `up` with the same manager id, started while m1 was cut off
            await query(database_url, LOCK_SESSION)
            assert await impostor.fetchval(TAKE_THE_LOCK)
            started = {**{k: v for k, v in before.items() if k != "version"}, "incarnation": "impostor", "pid": 1}
            await impostor.execute(
                "SELECT agentlog.append_event('manager-m1', 'ManagerStarted', $1::jsonb)", json.dumps(started)
            )
            assert system.process is not None
            code = await asyncio.to_thread(system.process.wait, 30)
        finally:
            await impostor.close()
    assert code != 0
    taken = system.wait_for_log(lambda line: line.get("event") == "manager.taken_over", 5)
    assert taken["incarnation"] == "impostor"
    assert not worker_alive(agent["agent_pid"], agent["agent_id"])
    exits = await query(database_url, "SELECT data FROM agentlog.events WHERE event_type = 'AgentProcessExited'")
    assert len(exits) == 1 and '"expected": true' in exits[0]["data"]  # detached and recorded before it stopped


async def set_global_budget(database_url: str, limit_tokens: int) -> None:
    async with EventStore.open(database_url) as store:
        budget = BudgetSet(budget_id="global", limit_tokens=limit_tokens, period="2026-01-01")
        await store.append(budget_stream("global"), [NewEvent(budget)], ANY)


async def test_an_agents_llm_calls_reserve_from_the_budget_and_wait_when_it_is_spent(
    system: RunningSystem, database_url: str
) -> None:
    """Every extraction call reserves tokens on the budgets first and settles what it used (issue 13 item 4): with
    room for one call, the first sentence is marked and the next waits, refused; room again, it is marked."""
    await set_global_budget(database_url, 600)  # one call's reservation (~500) fits; two do not
    token = await token_for(database_url, "ada")
    async with open_document(system.document_url, "budgeted", token) as ada:
        ada.type_paragraph(SENTENCE)
        assert places(await ada.wait_for_marks(2)) == {"Paris", "Tokyo"}
        (settled,) = await wait_until(
            database_url, "SELECT data FROM agentlog.events WHERE event_type = 'ReservationSettled'"
        )
        data = json.loads(settled["data"]) if isinstance(settled["data"], str) else settled["data"]
        (spent,) = await query(database_url, "SELECT data FROM agentlog.events WHERE event_type = 'TokensSpent'")
        spent_data = json.loads(spent["data"]) if isinstance(spent["data"], str) else spent["data"]
        assert data["used_tokens"] == spent_data["prompt_tokens"] + spent_data["completion_tokens"] > 0

        ada.type_paragraph("Then we took the train to Berlin.")
        await asyncio.sleep(3)
        assert places(ada.marks()) == {"Paris", "Tokyo"}, "a call was made the budget had no room for"
        calls = await query(database_url, "SELECT count(*) AS n FROM agentlog.events WHERE event_type = 'TokensSpent'")
        assert calls[0]["n"] == 1
        await set_global_budget(database_url, 100_000)
        assert "Berlin" in places(await ada.wait_for_marks(3, timeout=60))
    reserved = await query(
        database_url, "SELECT count(*) AS n FROM agentlog.events WHERE event_type = 'TokensReserved'"
    )
    assert reserved[0]["n"] == 2
