"""The named SQL file: every block loads, every query the code names exists, parameters are numbered."""

from __future__ import annotations

import re
from pathlib import Path

from agentlog.eventstore.postgres import queries
from agentlog.eventstore.postgres.queries import QUERIES, load_queries

ROOT = Path(__file__).resolve().parents[2]


def test_blocks_load_with_their_comments(tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text("-- header\n\n-- first --\n-- purpose\nSELECT 1;\n\n-- second --\nSELECT $1;\n")
    assert load_queries(path) == {"first": "-- purpose\nSELECT 1;", "second": "SELECT $1;"}


def test_every_query_named_in_the_code_exists() -> None:
    named = set()
    for path in (ROOT / "eventstore").rglob("*.py"):
        named |= set(re.findall(r'QUERIES\["([a-z_]+)"\]', path.read_text()))
    assert named, "no query references found"
    assert named <= set(QUERIES), named - set(QUERIES)
    assert set(QUERIES) <= named, f"unused queries: {set(QUERIES) - named}"


def test_queries_use_numbered_parameters_only() -> None:
    for name, sql in QUERIES.items():
        code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        assert "%s" not in code and "{" not in code, name
    assert queries.QUERIES is QUERIES
