"""`AgentSystem.start` records nothing that holds for other processes before it is sure to run."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentlog.agent_system import AgentSystem
from agentlog.config import Settings
from agentlog.documents.server import DocumentServerError
from agentlog.domains.deciders.events import decider_stream
from agentlog.eventstore import EventStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as opened:
        yield opened


async def test_an_up_that_cannot_bind_its_port_leaves_the_decider_settings_alone(
    store: EventStore, tmp_path: Path
) -> None:
    """A mistaken second `up` must not change the settings every running instance decides with."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        settings = Settings(home=tmp_path, port=taken.getsockname()[1], idle_grace_s=999, manager_id="m-late")
        with pytest.raises(DocumentServerError):
            await AgentSystem(settings).start(store)
    finally:
        taken.close()
    for decider in ("document-activity", "agent-manager"):
        assert await store.read_stream(decider_stream(decider)) == []
