"""Reports: the views of the `reports` schema, which read projections only, listed and fetched by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from agentlog.eventstore.errors import NotFoundError
from agentlog.eventstore.postgres.recorder import Executor
from agentlog.projections.queries import QUERIES

UNKNOWN_REPORT = "AL004"


class UnknownReportError(NotFoundError):
    """No report of that name; `agentlog report` lists them."""


@dataclass(frozen=True, slots=True)
class ReportInfo:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]


async def list_reports(executor: Executor) -> list[ReportInfo]:
    return [ReportInfo(row["name"], row["description"]) for row in await executor.fetch(QUERIES["list_reports"])]


async def fetch_report(executor: Executor, name: str) -> Report:
    try:
        rows = await executor.fetch(QUERIES["report_rows"], name)
    except asyncpg.PostgresError as error:
        if error.sqlstate == UNKNOWN_REPORT:
            raise UnknownReportError(f"no report named {name!r}; `agentlog report` lists them") from error
        raise
    columns = [row["column_name"] for row in await executor.fetch(QUERIES["report_columns"], name)]
    return Report(name, columns, [orjson.loads(row[0]) for row in rows])
