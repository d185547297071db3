"""The named SQL of the log, loaded once from `queries.sql` beside this module."""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK_HEADER = re.compile(r"^-- (?P<name>[a-z_]+) --$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, str]:
    """Split a file of `-- name --` blocks into {name: SQL}; comments inside a block stay with it."""
    text = path.read_text()
    headers = list(_BLOCK_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following else len(text)
        queries[header["name"]] = text[header.end() : end].strip()
    return queries


QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
