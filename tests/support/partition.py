"""A network partition and another machine, for tests on one: a TCP proxy (in its own thread) that can be frozen —
nothing passes either way, nothing is closed, what a partition looks like to the client (its kernel sees no error
for a quarter of an hour of retransmissions) — and `agentlog up` in namespaces of its own (its own host name and
process ids: it sees none of this machine's processes, as on another machine)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.system import ROOT, RunningSystem


class FreezableProxy:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (str(parts.hostname), int(parts.port or 5432))
        self.parts = parts
        self.loop = asyncio.new_event_loop()
        self.flowing: asyncio.Event | None = None
        self.upstream_ports: set[int] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def url(self) -> str:
        netloc = self.parts.netloc.rsplit("@", 1)
        return urlunsplit(self.parts._replace(netloc=f"{netloc[0]}@127.0.0.1:{self.port}"))

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def setup() -> None:
            self.flowing = asyncio.Event()
            self.flowing.set()
            self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(setup())
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        self.upstream_ports.add(int(up_writer.get_extra_info("sockname")[1]))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            assert self.flowing is not None
            while True:
                data = await src.read(65536)
                await self.flowing.wait()  # frozen: held here, forever
                if not data:
                    dst.close()
                    return
                dst.write(data)
                await dst.drain()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True)
        finally:
            for each in (writer, up_writer):
                each.close()
                self.writers.discard(each)

    def close(self) -> None:
        """Close every connection it carries and stop its thread (no stream is left for the collector to find)."""

        async def closing() -> None:
            assert self.server is not None and self.flowing is not None
            self.flowing.set()
            self.server.close()
            for writer in list(self.writers):
                writer.close()
            await self.server.wait_closed()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(closing(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def freeze(self) -> None:
        assert self.flowing is not None
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def thaw(self) -> None:
        assert self.flowing is not None
        self.loop.call_soon_threadsafe(self.flowing.set)


UNSHARE = ["unshare", "-u", "-p", "-f", "--mount-proc", "--kill-child"]


def other_machines_possible() -> bool:
    """Whether this machine lets a process have namespaces of its own (root, or a kernel allowing it)."""
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class OtherHostSystem(RunningSystem):
    """`agentlog up` in a UTS namespace of its own: socket.gethostname() says `hostname` (another machine)."""

    def __init__(self, database_url: str, home: Path, log_path: Path, *, hostname: str = "otherhost",
                 **settings: str) -> None:  # fmt: skip
        super().__init__(database_url, home, log_path, **settings)
        self.hostname = hostname

    def start(self, timeout: float = 60) -> RunningSystem:
        self._log = self.log_path.open("ab")
        self._offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [*UNSHARE, "sh", "-c", f"hostname {self.hostname} && exec {sys.executable} -m agentlog.cli up"],
            env=self.env, cwd=ROOT, stderr=self._log, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        listening = self.wait_for_log(lambda line: line.get("event") == "documents.listening", timeout)
        self.document_url = str(listening["url"]).removesuffix("/{document_id}")
        self.wait_for_log(lambda line: line.get("event") == "runner.started", timeout)
        return self
