"""A projection hosted by the handler runner: the live instance, writing into the `projections` schema."""

from __future__ import annotations

from collections.abc import Mapping

from agentlog.eventstore.decoding import takes_raw_events
from agentlog.handlers.handler import HandlerBatch
from agentlog.projections.projection import LIVE_SCHEMA, Projection


class ProjectionHandler:
    """Runs `projection.apply` on each batch; its checkpoint carries the projection's name."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.name = projection.name
        self.event_types = projection.event_types
        self.raw_events = takes_raw_events(projection)
        # The session looks up unqualified table names in the live schema (the runner's own SQL is qualified).
        self.session_settings: Mapping[str, str] = {"search_path": LIVE_SCHEMA}

    async def handle(self, batch: HandlerBatch) -> None:
        await self.projection.apply(batch.connection, batch.records if self.raw_events else batch.events)
