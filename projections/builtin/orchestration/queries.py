"""The SQL of the orchestration projections (`queries.sql`, named blocks)."""

from __future__ import annotations

from pathlib import Path

from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
