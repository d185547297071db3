"""Which projections must be rebuilt: those whose live tables were built by another version of their code."""

from __future__ import annotations

from collections.abc import Sequence

from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.recorder import Executor
from agentlog.projections.projection import Projection
from agentlog.projections.queries import QUERIES


async def projections_to_rebuild(executor: Executor, projections: Sequence[Projection]) -> list[Projection]:
    """Register projections seen for the first time; return those whose recorded version differs.

    A projection seen for the first time with no checkpoint builds live from the start of the log. One with a
    checkpoint but no recorded version (its record was lost) is rebuilt: nobody knows what built its tables.
    """
    recorded = {row["name"]: row["version"] for row in await executor.fetch(QUERIES["select_versions"])}
    stale = []
    for projection in projections:
        version = recorded.get(projection.name)
        if version is None and await recorder.select_checkpoint(executor, projection.name) is None:
            await executor.execute(QUERIES["record_version"], projection.name, projection.version, False)
        elif version != projection.version:
            stale.append(projection)
    return stale
