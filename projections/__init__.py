"""Read models derived from the log: one module per projection (its tables and its apply), rebuilt by replay.

A projection's tables are made by an alembic migration in the `projections` schema; the handler runner keeps it
live (`handlers.projection_handler`); `replay` rebuilds it into a shadow schema and swaps it in; report views in
the `reports` schema read projections only.
"""

from agentlog.projections.projection import LIVE_SCHEMA, Projection, shadow_schema
from agentlog.projections.registry import installed_projections, resolve_projection

__all__ = ["LIVE_SCHEMA", "Projection", "installed_projections", "resolve_projection", "shadow_schema"]
