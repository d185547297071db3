"""Large texts of planner sessions (prompts, answers, tool results) kept once by content hash, so that events carry
a reference (`sha256:<hex>`) instead of the text: the log stays small and a prompt sent a hundred times is kept once.

A text is written before the event that refers to it, so a reference in the log is always found here."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from agentlog.domains.planning.events import INLINE_CHARS
from agentlog.eventstore.postgres.connections import StatementPool
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


def content_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ContentNotFoundError(LookupError):
    """An event names a text the content store does not have (it was deleted by hand, or restored without it)."""


class Contents:
    """The content store, with the texts read lately kept in memory (at most `cached`)."""

    def __init__(self, pool: StatementPool, cached: int = 512) -> None:
        self.pool = pool
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cached = cached

    async def put(self, texts: Iterable[str]) -> list[str]:
        """The references of `texts`, each kept (once) in the store."""
        listed = list(texts)
        hashes = [content_hash(text) for text in listed]
        if listed:
            await self.pool.execute(QUERIES["put_contents"], hashes, listed)
            for ref, text in zip(hashes, listed, strict=True):
                self._remember(ref, text)
        return hashes

    async def inline_or_ref(self, text: str) -> tuple[str, str | None]:
        """(content, content_ref) for an event: the text itself when short, else its reference."""
        if len(text) <= INLINE_CHARS:
            return text, None
        (ref,) = await self.put([text])
        return "", ref

    async def get(self, refs: Iterable[str]) -> dict[str, str]:
        refs = list(refs)
        wanted = [ref for ref in dict.fromkeys(refs) if ref not in self._cache]
        if wanted:
            for row in await self.pool.fetch(QUERIES["get_contents"], wanted):
                self._remember(row["content_hash"], row["body"])
        found = {ref: self._cache[ref] for ref in refs if ref in self._cache}
        missing = [ref for ref in refs if ref not in found]
        if missing:
            raise ContentNotFoundError(f"the content store has no {missing[0]}")
        return found

    def _remember(self, ref: str, text: str) -> None:
        self._cache[ref] = text
        self._cache.move_to_end(ref)
        while len(self._cache) > self._cached:
            self._cache.popitem(last=False)
