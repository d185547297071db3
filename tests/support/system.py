"""`agentlog up` as a real process for end-to-end tests, and a Y.js client (pycrdt) that people use in them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from pycrdt import Doc, Provider, Text, XmlElement, XmlFragment, XmlText
from websockets.asyncio.client import connect

from agentlog.agents.worker import SocketChannel
from agentlog.documents.tokens import Kind, issue, signing_key
from agentlog.eventstore.postgres.connections import create_pool

ROOT = Path(__file__).resolve().parents[2]


class RunningSystem:
    """One `agentlog up` process on a test database, its document server on a free port."""

    def __init__(self, database_url: str, home: Path, log_path: Path, **settings: str) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
        self.env.update(
            {
                "AGENTLOG_DATABASE_URL": database_url,
                "AGENTLOG_HOME": str(home),
                "AGENTLOG_PORT": "0",
                "AGENTLOG_LOG_FORMAT": "json",
                "AGENTLOG_POLL_INTERVAL_S": "0.2",
                "AGENTLOG_HANDLER_LOCK_RETRY_S": "0.2",
                **{f"AGENTLOG_{key.upper()}": value for key, value in settings.items()},
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.document_url = ""

    def start(self, timeout: float = 60) -> RunningSystem:
        self._log = self.log_path.open("ab")
        self._offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentlog.cli", "up"],
            env=self.env,
            cwd=ROOT,
            stderr=self._log,
            stdout=subprocess.DEVNULL,
        )
        listening = self.wait_for_log(lambda line: line.get("event") == "documents.listening", timeout)
        self.document_url = str(listening["url"]).removesuffix("/{document_id}")
        self.wait_for_log(lambda line: line.get("event") == "runner.started", timeout)
        return self

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            for raw in log:
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines

    def wait_for_log(self, predicate: Any, timeout: float, count: int = 1) -> dict[str, Any]:
        """The `count`-th line of this process's log that `predicate` accepts, once it is there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.log_lines() if predicate(line)]
            if len(found) >= count:
                return found[count - 1]
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"agentlog up exited with {self.process.returncode}; log: {self.log_path}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting in the log of agentlog up ({self.log_path})")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, how: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()


async def token_for(
    database_url: str, name: str, kind: Kind = "person", *, ttl_s: float = 3600, document_id: str | None = None
) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        return issue(await signing_key(pool), kind, name, ttl_s=ttl_s, document_id=document_id)
    finally:
        await pool.close()


class Person:
    """Someone with a document open (pycrdt as a y-websocket client), in the Tiptap layout or as plain text."""

    def __init__(self, document: Doc[Any], layout: str) -> None:
        self.document = document
        self.layout = layout

    def type_paragraph(self, sentence: str) -> None:
        if self.layout == "text":
            text = self.document.get("text", type=Text)
            text += sentence
            return
        fragment = self.document.get("default", type=XmlFragment)
        with self.document.transaction():
            paragraph = fragment.children.append(XmlElement("paragraph"))
            paragraph.children.append(XmlText(sentence))

    def marks(self) -> list[tuple[str, dict[str, Any]]]:
        nodes: list[Text | XmlText] = []
        if self.layout == "text":
            nodes.append(self.document.get("text", type=Text))
        else:
            for paragraph in self.document.get("default", type=XmlFragment).children:
                nodes.extend(child for child in getattr(paragraph, "children", []) if isinstance(child, XmlText))
        found = []
        for node in nodes:
            for chunk, attributes in node.diff():
                if attributes and "geo" in attributes:
                    found.append((str(chunk), dict(attributes["geo"])))
        return found

    async def wait_for_marks(self, count: int, timeout: float = 30) -> list[tuple[str, dict[str, Any]]]:
        async with asyncio.timeout(timeout):
            while len(marks := self.marks()) < count:
                await asyncio.sleep(0.02)
        return marks


@asynccontextmanager
async def open_document(
    document_url: str, document_id: str, token: str, layout: str = "tiptap"
) -> AsyncIterator[Person]:
    document: Doc[Any] = Doc()
    async with connect(f"{document_url}/{document_id}?token={token}") as websocket:
        channel = SocketChannel(websocket, document_id)
        async with Provider(document, channel):
            await asyncio.wait_for(channel.synced.wait(), 15)
            yield Person(document, layout)


async def query(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def wait_until(database_url: str, sql: str, *args: object, timeout: float = 30) -> list[asyncpg.Record]:
    """Poll `sql` until it returns rows."""
    async with asyncio.timeout(timeout):
        while not (rows := await query(database_url, sql, *args)):
            await asyncio.sleep(0.1)
    return rows
