"""Documents under load and attack against real `agentlog up` processes (issue 10): twenty people opening one cold
document at once, two servers sharing one document, and hostile awareness beside real Node y-websocket peers."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from agentlog.documents.protocol import AWARENESS, SYNC_STEP1, AwarenessEntry, awareness_message, sync_message
from agentlog.documents.updates import load_document
from agentlog.eventstore.postgres.connections import create_pool
from tests.support.node_client import node_available, run_yjs_client
from tests.support.system import Person, RunningSystem, open_document, query, token_for, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentlog-documents-") as directory:
        yield Path(directory)


async def test_twenty_people_opening_a_cold_document_at_once_all_sync_and_it_goes_idle(
    database_url: str, home: Path, tmp_path: Path
) -> None:
    system = RunningSystem(database_url, home, tmp_path / "up.log", idle_grace_s="1", max_agents="0").start()
    try:
        token = await token_for(database_url, "crowd")
        people: list[Person] = []
        leave = asyncio.Event()

        async def person() -> None:  # each in its own task, all opening at the same moment
            async with open_document(system.document_url, "cold", token, "text") as opened:
                people.append(opened)
                await leave.wait()

        crowd = [asyncio.create_task(person()) for _ in range(20)]
        async with asyncio.timeout(60):
            while len(people) < 20:
                await asyncio.sleep(0.05)
        people[0].document.get("text", type=Text).insert(0, "hello")
        async with asyncio.timeout(30):
            while not all(str(p.document.get("text", type=Text)) == "hello" for p in people):
                await asyncio.sleep(0.05)
        await wait_until(database_url, "SELECT 1 FROM projections.documents WHERE document_id = 'cold'"
                                       " AND people_present = 20")  # fmt: skip
        leave.set()
        await asyncio.gather(*crowd)
        await wait_until(
            database_url,
            "SELECT 1 FROM projections.documents WHERE document_id = 'cold' AND people_present = 0"
            " AND status = 'idle'",
        )
        kinds = [row["event_type"] for row in await query(
            database_url, "SELECT event_type FROM agentlog.events WHERE stream_id = 'document-cold'"
        )]  # fmt: skip
        assert kinds.count("PersonJoined") == 20 and kinds.count("PersonLeft") == 20
    finally:
        system.stop()


async def test_two_servers_share_one_document(database_url: str, home: Path, tmp_path: Path) -> None:
    """Issue 10, item 7: a person on each of two `up` processes types into one document; both see everything,
    and what is stored is what both see."""
    settings = {"max_agents": "0", "idle_grace_s": "1"}
    one = RunningSystem(database_url, home, tmp_path / "one.log", manager_id="m1", **settings).start()
    two = RunningSystem(database_url, home, tmp_path / "two.log", manager_id="m2", **settings).start()
    try:
        token = await token_for(database_url, "ada")
        async with open_document(one.document_url, "shared", token, "text") as ada, open_document(
            two.document_url, "shared", token, "text"
        ) as bob:
            ada.document.get("text", type=Text).insert(0, "Rome. ")
            bob.document.get("text", type=Text).insert(0, "Oslo. ")

            def both() -> tuple[str, str]:
                return str(ada.document.get("text", type=Text)), str(bob.document.get("text", type=Text))

            async with asyncio.timeout(30):
                while not (len(both()[0]) == 12 and both()[0] == both()[1]):
                    await asyncio.sleep(0.05)
            seen = both()[0]
        pool = await create_pool(database_url, max_size=1)
        try:
            async with asyncio.timeout(30):
                while True:
                    stored = await load_document(pool, "shared", "test")
                    if str(stored.document.get("text", type=Text)) == seen:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await pool.close()
        people = await wait_until(
            database_url,
            "SELECT people_present FROM projections.documents WHERE document_id = 'shared' AND status = 'idle'",
        )
        assert people[0]["people_present"] == 0
    finally:
        one.stop()
        two.stop()


@pytest.mark.skipif(not node_available(), reason="node and npm are not on PATH")
async def test_garbage_awareness_reaches_no_node_peer(database_url: str, home: Path, tmp_path: Path) -> None:
    """Issue 10, item 3: an invalid-JSON awareness state was forwarded and crashed the Node y-websocket peers."""
    system = RunningSystem(database_url, home, tmp_path / "up.log", idle_grace_s="2").start()
    try:
        token = await token_for(database_url, "ada")
        peer = asyncio.create_task(
            run_yjs_client(system.document_url, "hostile", token, mode="tiptap",
                           sentence="We flew from Paris to Tokyo.", expect_marks=2, timeout_s=45)
        )  # fmt: skip
        await asyncio.sleep(1.5)
        garbage = b"\x01" + b"\x2a" + b"\x01" + b"\x05" + b"{nope"
        async with connect(f"{system.document_url}/hostile?token={token}") as eve:
            await eve.send(sync_message(SYNC_STEP1, Doc().get_state()))
            await eve.send(awareness_message([AwarenessEntry(43, 1, '{"user": {"name": "eve"}}')]))
            await eve.send(bytes([AWARENESS, len(garbage)]) + garbage)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    async for _ in eve:
                        pass
            assert eve.close_code == 1007
        result = await peer
        assert result.ok, result.describe()
    finally:
        system.stop()
