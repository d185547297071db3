"""The PostgreSQL server a benchmark measures on: the one given by URL, or agentlog's embedded one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentlog.embedded import EmbeddedPostgres


@contextmanager
def server_url(database_url: str | None, home: Path) -> Iterator[str]:
    """The server's URL; an embedded server under `home` is started if needed, and stopped after if it was."""
    if database_url:
        yield database_url
        return
    server = EmbeddedPostgres(home)
    url, started_here = server.ensure_running()
    try:
        yield url
    finally:
        if started_here:
            server.stop()
