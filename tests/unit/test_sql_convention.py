"""SQL lives in `.sql` files of named blocks beside the code that runs it, never inline in Python (CONTRIBUTING.md,
"SQL"): every string constant of our packages that is a SQL statement fails here, named file:line.

A statement is a string (not a docstring) that starts, after any `--` comment lines, with a statement keyword in
capitals followed by more text (`SELECT 1`, `UPDATE t SET ...`, `CREATE DATABASE "x"`, the leading text of an
f-string), or is a transaction-control word alone (`COMMIT`); lower-case SQL counts when it is unmistakable
(`select ... from`, `insert into`, `update t set`, `delete from`). Prose constants such as 'lock' or 'start' are
words, not statements.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

from agentlog.eventstore.postgres.queries import load_queries

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = ("agentlog", "eventstore", "domains", "projections", "handlers")
"""Our packages' real folders. `agentlog/` holds symlinks to the other four (the installed namespace): they are
walked once, as themselves. Tests, bench, alembic and examples are not packages of ours."""

KEYWORDS = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "CREATE", "ALTER", "DROP",
    "TRUNCATE", "GRANT", "REVOKE", "COMMENT ON", "SECURITY LABEL", "LISTEN", "UNLISTEN", "NOTIFY", "COPY", "SET",
    "RESET", "SHOW", "LOCK", "DO", "CALL", "EXPLAIN", "ANALYZE", "VACUUM", "REFRESH", "REINDEX", "CLUSTER",
    "PREPARE", "EXECUTE", "DEALLOCATE", "DISCARD", "SAVEPOINT", "RELEASE", "START TRANSACTION", "BEGIN", "COMMIT",
    "END", "ROLLBACK", "ABORT", "CHECKPOINT", "IMPORT FOREIGN SCHEMA", "REASSIGN OWNED",
)  # fmt: skip
STANDALONE = ("BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT", "CHECKPOINT", "VACUUM", "ANALYZE")
"""Statements that are complete as one word."""

_COMMENTS = r"\A\s*(?:--[^\n]*\n\s*)*"
_STATEMENT = re.compile(
    _COMMENTS + rf"(?:(?:{'|'.join(KEYWORDS)})\s+\S|(?:{'|'.join(STANDALONE)})\s*;?\s*\Z)".replace(" ", r"\s+")
)
_LOWER_CASE = re.compile(
    _COMMENTS + r"(?:select\s.*\sfrom\s|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s)",
    re.IGNORECASE | re.DOTALL,
)

ALLOWED: dict[tuple[str, str], str] = {
    ("eventstore/postgres/recorder.py", "COMMIT"): (
        "protocol, not a statement sent: the command status tag asyncpg returns for `commit_batch`, compared with"
        " COMMIT (PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK)"
    ),
}
"""(file, the string's text) → why it stays inline. Transaction control sent to the server is a statement like any
other and lives in a block (`begin_batch`, `commit_batch`, `abandon_batch`, `rollback_given_back` in
eventstore/postgres/queries.sql); only a word the driver hands back, never sends, stays inline."""


def package_files(suffix: str) -> Iterator[Path]:
    for package in PACKAGES:
        for folder, subfolders, files in os.walk(ROOT / package):
            subfolders[:] = sorted(
                name for name in subfolders if name != "__pycache__" and not (Path(folder) / name).is_symlink()
            )
            yield from (Path(folder) / name for name in sorted(files) if name.endswith(suffix))


def is_statement(text: str) -> bool:
    return bool(_STATEMENT.match(text) or _LOWER_CASE.match(text))


def inline_sql(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each string constant in `path` that is a SQL statement; docstrings (of modules, classes,
    functions and attributes: a string standing alone as a statement) are prose."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and is_statement(node.value)
        ):
            yield node.lineno, node.value


def test_the_detector_knows_statements_from_prose() -> None:
    statements = [
        "SELECT 1", "\nSELECT a\n  FROM b", "-- why\nWITH x AS (SELECT 1) SELECT * FROM x", "ROLLBACK", "COMMIT;",
        'CREATE DATABASE "', "ALTER ROLE {} LOGIN PASSWORD {}", "COMMENT ON VIEW v IS 'x'", "select a from b",
        "update t set a = 1", "START TRANSACTION",
    ]  # fmt: skip
    prose = [
        "lock", "start", "START", "insert", "delete", "checkpoint", "Show one type's schema versions in full.",
        "LOCK_NAME", "SELECTED", "update the document", "select a document", "do",
    ]  # fmt: skip
    assert [text for text in statements if not is_statement(text)] == []
    assert [text for text in prose if is_statement(text)] == []


def test_no_sql_inline_in_python() -> None:
    found = []
    for path in package_files(".py"):
        relative = path.relative_to(ROOT).as_posix()
        for line, text in inline_sql(path):
            if (relative, text.strip()) not in ALLOWED:
                found.append(f"{relative}:{line}: {text.strip().splitlines()[0][:80]}")
    assert found == [], "SQL inline in Python; move it to a .sql file of named blocks:\n" + "\n".join(found)


def test_every_exception_is_still_needed() -> None:
    for (relative, text), reason in ALLOWED.items():
        path = ROOT / relative
        assert text in {found.strip() for _, found in inline_sql(path)}, f"{relative}: {text!r} ({reason}) is gone"


def test_sql_files_are_named_blocks_with_their_purpose() -> None:
    """Every block of our packages' `.sql` files says what it does before its SQL; a psycopg block (`%s`) says
    nothing with `%` in its comments, where psycopg would read a placeholder."""
    files = list(package_files(".sql"))
    assert files
    for path in files:
        queries = load_queries(path)
        assert queries, f"{path.relative_to(ROOT)} has no `-- name --` blocks"
        for name, sql in queries.items():
            lines = sql.splitlines()
            assert lines and lines[0].startswith("--"), f"{path.relative_to(ROOT)}: {name} does not say what it does"
            assert any(not line.startswith("--") for line in lines), f"{path.relative_to(ROOT)}: {name} has no SQL"
            if "%s" in sql:
                comments = [line for line in lines if line.lstrip().startswith("--")]
                assert not any("%" in line for line in comments), f"{path.relative_to(ROOT)}: {name}: `%` in a comment"



_LOADS_SIBLING = 'load_queries(Path(__file__).with_suffix(".sql"))'
_NAMED = re.compile(r'QUERIES\[\s*"([a-z_]+)"\s*\]')


def test_every_module_names_the_blocks_of_its_own_sql_file() -> None:
    """A module that loads its sibling `.sql` names only blocks that exist there, and every block is named in it
    (as `QUERIES["name"]`, or as a string, like agent_connections' event type → block mapping)."""
    modules = [path for path in package_files(".py") if _LOADS_SIBLING in path.read_text()]
    assert len(modules) >= 10
    for path in modules:
        blocks = set(load_queries(path.with_suffix(".sql")))
        text = path.read_text()
        strings = {node.value for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Constant)}
        relative = path.relative_to(ROOT).as_posix()
        assert set(_NAMED.findall(text)) <= blocks, f"{relative} names blocks its .sql lacks"
        assert blocks <= strings, f"{relative}.sql has blocks nothing names: {sorted(blocks - strings)}"
