"""The rooms of one server without a database: what a room leaves behind once it is unloaded (hostile review)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pycrdt import Doc

from agentlog.documents import rooms as rooms_module
from agentlog.documents.room import RoomLimits
from agentlog.documents.rooms import DocumentRooms
from agentlog.documents.updates import LoadedDocument


async def test_an_unloaded_room_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock per document name was kept for ever: a token opening `*` could open a million names one after
    another (the open-rooms limit never saw more than one at a time) and grow the server without end."""

    async def load(pool: Any, document_id: str, server_id: str) -> LoadedDocument:
        return LoadedDocument(Doc(), 0, 0, 0)

    async def since(pool: Any, document_id: str, barrier: int, server_id: str) -> list[bytes]:
        return []

    monkeypatch.setattr(rooms_module, "load_document", load)
    monkeypatch.setattr(rooms_module, "stored_since", since)
    rooms = DocumentRooms(None, None, "s1", RoomLimits(), unload_after_s=0)  # type: ignore[arg-type]
    for index in range(200):
        await rooms.enter(f"doc-{index}")
        rooms.leave(f"doc-{index}")
    async with asyncio.timeout(5):
        while rooms.rooms or rooms._unloads:
            await asyncio.sleep(0.01)
    assert rooms._locks == {} and rooms._occupants == {}
