"""A PostgreSQL restart is survived (issue 9, item 9): `agentlog up` keeps running through two restarts under
load, its handlers resume from their checkpoints, the manager takes its lock back and keeps its agents, people's
sockets stay open and what they typed meanwhile is stored, and nothing appended is lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pycrdt import Doc, XmlFragment, XmlText

from agentlog.database import migrate
from agentlog.documents.updates import load_document
from agentlog.embedded import APPLICATION_ROLE, EmbeddedPostgres
from agentlog.eventstore.postgres.connections import create_pool
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import ROOT, RunningSystem, open_document, query, token_for, wait_until

pytestmark = pytest.mark.slow

DOCUMENTS = ("lisbon", "oslo", "quito")
FIRST = {"lisbon": "We landed in Lisbon.", "oslo": "Then a train to Oslo.", "quito": "Later we flew to Quito."}
DURING = {"lisbon": "On to Madrid.", "oslo": "Then Stockholm.", "quito": "Finally Lima."}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A cluster of its own (the test restarts it), migrated; the application role's URL."""
    server = EmbeddedPostgres(tmp_path / "cluster", server_settings={"fsync": "off"})
    url, _ = server.ensure_running()
    migrate(url)
    server.ensure_logins()
    try:
        yield server, server.role_url(APPLICATION_ROLE)
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "cluster", ignore_errors=True)


async def write_until(url: str, stop: asyncio.Event, acknowledged: list[str]) -> None:
    """A writer from another language's point of view: the SQL append function, retried on any failure. Only an
    append whose commit was acknowledged counts; an ambiguous one is retried with the same id (idempotent)."""
    connection: asyncpg.Connection | None = None
    while not stop.is_set():
        event_id = str(uuid.uuid4())
        while not stop.is_set():
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncpg.connect(url)
                await connection.execute(
                    "SELECT agentlog.append_event('load-1', 'LoadTick', '{}'::jsonb, event_id => $1::uuid)", event_id
                )
                acknowledged.append(event_id)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                connection = None
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.01)
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()


def text_of(document: Doc) -> list[list[tuple[str, list[tuple[str, str]]]]]:
    """Each paragraph's text runs with their marks (attributes sorted: XML output orders them at random)."""
    paragraphs = []
    for paragraph in document.get("default", type=XmlFragment).children:
        runs = []
        for child in getattr(paragraph, "children", []):
            if isinstance(child, XmlText):
                for chunk, attributes in child.diff():
                    geo = dict((attributes or {}).get("geo", {}))
                    runs.append((str(chunk), sorted((key, str(value)) for key, value in geo.items())))
        paragraphs.append(runs)
    return paragraphs


def reconnected(line: dict[str, object]) -> bool:
    return line.get("event") == "manager.reconnected"


async def test_up_survives_two_database_restarts_under_load(
    cluster: tuple[EmbeddedPostgres, str], tmp_path: Path
) -> None:
    server, url = cluster
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(url, home, tmp_path / "up.log", idle_grace_s="600", ping_s="2").start()
    stop_writing = asyncio.Event()
    acknowledged: list[str] = []
    writer = asyncio.create_task(write_until(url, stop_writing, acknowledged))
    try:
        token = await token_for(url, "ada")
        async with contextlib.AsyncExitStack() as people_open:
            people = {
                document: await people_open.enter_async_context(open_document(system.document_url, document, token))
                for document in DOCUMENTS
            }
            for document, person in people.items():
                person.type_paragraph(FIRST[document])
            for person in people.values():
                await person.wait_for_marks(1, timeout=60)
            agents_before = {
                row["document_id"]: row["agent_id"]
                for row in await query(url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
            }
            assert set(agents_before) == set(DOCUMENTS)

            for restart in range(2):
                await asyncio.to_thread(server.restart)
                for document, person in people.items():  # typed while the server comes back
                    person.type_paragraph(f"{DURING[document]} ({restart})")
                # The manager takes its lock back on a new session (and `wait_for_log` fails if up exits meanwhile).
                await asyncio.to_thread(system.wait_for_log, reconnected, 60, restart + 1)
                assert system.process is not None and system.process.poll() is None, "up must outlive a restart"

            # Everyone's later sentences get their marks: the same agents, still connected, did them.
            for person in people.values():
                await person.wait_for_marks(3, timeout=60)
            # What each person sees is what is stored (their edits made during the restarts included).
            pool = await create_pool(url, max_size=1)
            try:
                for document, person in people.items():
                    for _ in range(150):
                        stored = text_of((await load_document(pool, document, 'test')).document)
                        if stored == text_of(person.document):
                            break
                        await asyncio.sleep(0.2)
                    assert stored == text_of(person.document)
            finally:
                await pool.close()
        stop_writing.set()
        await writer

        # Nothing appended was lost, and every handler passed all of it exactly once.
        recorded = {
            str(row["event_id"])
            for row in await query(url, "SELECT event_id FROM agentlog.events WHERE stream_id = 'load-1'")
        }
        assert set(acknowledged) <= recorded and len(acknowledged) > 20
        await wait_until(
            url,
            "SELECT 1 FROM projections.stream_summary WHERE stream_id = 'load-1' AND event_count = $1",
            len(recorded),
        )
        await wait_until(url, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM agentlog.handler_lag WHERE events_behind > 0)")

        # The manager kept its agents: reconnected, never recorded as lost, no agent replaced.
        kinds = [row["event_type"] for row in await query(
            url, "SELECT event_type FROM agentlog.events WHERE category = 'manager' ORDER BY global_position"
        )]  # fmt: skip
        assert kinds[0] == "ManagerStarted" and kinds.count("ManagerReconnected") >= 2
        assert "ManagerStopped" not in kinds
        agents_after = {
            row["document_id"]: row["agent_id"]
            for row in await query(url, "SELECT * FROM projections.agent_connections WHERE status = 'active'")
        }
        assert agents_after == agents_before
        assert system.process is not None and system.process.poll() is None
    finally:
        stop_writing.set()
        with contextlib.suppress(Exception):
            await writer
        system.stop()
    assert system.process is not None and system.process.returncode == 0

    verified = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agentlog.cli", "replay", "--all", "--verify"],
        env=system.env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
