"""The tokens taken back, as this document server knows them: followed from the log (`token-…` streams), so a
revocation recorded anywhere closes the sockets that use it on every server within a second or so.

The server reads every revocation before it accepts its first socket (they are few: one event per revocation),
then follows new ones live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from agentlog.documents.tokens import Identity
from agentlog.domains.tokens.events import TokenRevoked
from agentlog.eventstore import START, EventStore, RecordedEvent
from agentlog.eventstore.decoding import decode_wanted
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS

log = structlog.get_logger("agentlog.documents.revocations")


class Revocations:
    def __init__(self) -> None:
        self.token_ids: set[str] = set()
        self.holders: dict[tuple[str, str], float] = {}
        """(kind, name) → tokens issued at or before this moment are revoked."""
        self.caught_up = asyncio.Event()

    def revoked(self, identity: Identity) -> bool:
        if identity.token_id is not None and identity.token_id in self.token_ids:
            return True
        before = self.holders.get((identity.revocation_kind, identity.name))
        return before is not None and identity.issued_at <= before

    def add(self, revoked: TokenRevoked) -> None:
        if revoked.token_id is not None:
            self.token_ids.add(revoked.token_id)
        if revoked.kind is not None and revoked.subject is not None and revoked.issued_before is not None:
            key = (revoked.kind, revoked.subject)
            self.holders[key] = max(self.holders.get(key, 0.0), revoked.issued_before)

    async def follow(self, store: EventStore, on_revoked: Callable[[TokenRevoked], None]) -> None:
        """Read every revocation recorded so far, then each new one as it is recorded, until cancelled."""
        after = START
        delay = 0.1
        while True:
            try:
                page = await store.read_category("token", after=after, limit=1_000)
            except CONNECTION_ERRORS as error:  # no socket is let in before this is read: keep trying
                log.warning("token.revocations_unread", error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._apply(store, page)
            if page:
                after = page[-1].position
            if len(page) < 1_000:
                break
        self.caught_up.set()
        async for batch in await store.subscribe(after=after, category="token"):
            for revoked in self._apply(store, batch):
                on_revoked(revoked)

    def _apply(self, store: EventStore, events: list[RecordedEvent]) -> list[TokenRevoked]:
        typed, undecodable = decode_wanted(store.catalogue, events, frozenset({"TokenRevoked"}))
        for skipped in undecodable:
            log.warning("token.revocation_unreadable", position=skipped.recorded.global_position,
                        reason=skipped.reason)  # fmt: skip
        revocations = [item.event for item in typed if isinstance(item.event, TokenRevoked)]
        for revoked in revocations:
            self.add(revoked)
        return revocations
