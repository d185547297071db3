"""`agentlog replay` and `agentlog report`: the read side for people."""

from __future__ import annotations

import csv
import enum
import io
import json
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from agentlog.cli.common import ExitCode, err, fail, handles_errors, load_settings, out, run_async, write_line
from agentlog.database import open_database
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.handlers.decider import DecisionDifference, verify_decider
from agentlog.planning.verify import SessionDeparture, verify_sessions
from agentlog.projections import installed_projections, resolve_projection
from agentlog.projections.projection import Projection
from agentlog.projections.replay import Progress as ReplayProgress
from agentlog.projections.replay import RebuildOutcome, rebuild, verify
from agentlog.projections.reports import fetch_report, list_reports


class EventsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} ev/s", style="progress.data.speed")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        EventsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@handles_errors
def replay_command(
    names: Annotated[list[str] | None, typer.Argument(help="Projections to rebuild.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Rebuild every installed projection.")] = False,
    check: Annotated[
        bool, typer.Option("--verify", help="Rebuild into a shadow and compare with the live tables; no swap.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=500_000, help="Events per transaction: memory for speed.")
    ] = 50_000,
) -> None:
    """Rebuild projections from the log while everything keeps running, then swap them in.

    With --verify, deciders are checked too: each is refolded over the log up to its checkpoint and every
    decision it would make differently from the recorded one is reported.
    """
    if every and names:
        fail("name the projections, or give --all, not both", ExitCode.USAGE)
    if not every and not names and not check:
        fail("name the projections to rebuild, or give --all", ExitCode.USAGE)
    everything = every or (check and not names)
    settings = load_settings()
    from agentlog.agent_system import deciders  # imported here: it brings the document agents' system

    known_deciders = {decider.name: decider for decider in deciders(settings)}
    if not check and any(name in known_deciders for name in names or []):
        fail("deciders are verified (--verify), not rebuilt: their decisions are in the log", ExitCode.USAGE)
    chosen: list[Projection] = (
        list(installed_projections().found.values())
        if everything
        else [resolve_projection(name) for name in names or [] if name not in known_deciders]
    )
    chosen_deciders = (
        list(known_deciders.values())
        if everything and check
        else [known_deciders[name] for name in names or [] if name in known_deciders]
    )
    url = open_database(settings).url

    async def verify_deciders() -> list[tuple[str, list[DecisionDifference]]]:
        found = []
        async with EventStore.open(url) as store:
            for decider in chosen_deciders:
                checkpoint = await recorder.select_checkpoint(store.pool, decider.name)
                if checkpoint is not None:  # a decider that never ran has decided nothing
                    found.append((decider.name, await verify_decider(store, decider, until=checkpoint)))
        return found

    async def verify_planner_sessions() -> tuple[int, list[SessionDeparture]]:
        async with EventStore.open(url) as store:
            return await verify_sessions(store)

    try:
        outcomes = run_async(_replay_projections(url, chosen, check=check, batch_size=batch_size))
        decider_outcomes = run_async(verify_deciders()) if check else []
        sessions = run_async(verify_planner_sessions()) if check and everything else (0, [])
    except KeyboardInterrupt:
        fail("interrupted: the live projections are untouched; run the same command to resume", ExitCode.FAILED)
    differences = 0
    for name, found in decider_outcomes:
        differences += len(found)
        out.print(
            f"decider {name}: refolded over the log; "
            + ("every decision matches" if not found else f"{len(found)} decision(s) differ")
        )
        for decision in found:
            out.print(f"  {decision.describe()}", markup=False)
    if check and everything:
        count, departed = sessions
        differences += len(departed)
        out.print(f"planner sessions: {count} refolded; "
                  + ("every step the runtime recorded follows the rule" if not departed
                     else f"{len(departed)} event(s) depart from it"))  # fmt: skip
        for departure in departed:
            out.print(f"  {departure.describe()}", markup=False)
    for outcome in outcomes:
        if check:
            differences += len(outcome.differences)
            verdict = "matches" if not outcome.differences else f"{len(outcome.differences)} difference(s)"
            out.print(f"{outcome.projection}: rebuilt {outcome.events:,} events; live {verdict}")
            for difference in outcome.differences:
                row = json.dumps(difference.row, sort_keys=True, default=str)
                out.print(f"  {difference.table} {difference.side}: {row}", markup=False)
        else:
            rate = outcome.events / outcome.seconds if outcome.seconds else 0
            out.print(
                f"{outcome.projection}: rebuilt from {outcome.events:,} events in {outcome.seconds:.1f} s "
                f"({rate:,.0f} events/s) and swapped in at {outcome.position}"
            )
    if differences:
        raise typer.Exit(int(ExitCode.DIFFERENCES))


async def _replay_projections(
    url: str, chosen: list[Projection], *, check: bool, batch_size: int
) -> list[RebuildOutcome]:
    """Rebuild (or verify) each projection in turn, with a progress bar each."""
    outcomes = []
    bar = _progress_bar()
    tasks: dict[str, TaskID] = {}

    def show(progress: ReplayProgress) -> None:
        # The bars appear at the first progress, once a rebuild holds its lock: a refused one (another process is
        # rebuilding that projection) prints only its one line of error.
        if not tasks:
            bar.start()
        if progress.projection not in tasks:
            tasks[progress.projection] = bar.add_task(progress.projection, total=None)
        bar.update(tasks[progress.projection], completed=progress.done, total=max(progress.total, 1))

    async with EventStore.open(url) as store:
        try:
            for projection in chosen:
                run = verify if check else rebuild
                outcomes.append(await run(store, projection, batch_size=batch_size, on_progress=show))
        finally:
            if tasks:  # an unused bar would still print an empty line
                bar.stop()
    return outcomes


class ReportFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@handles_errors
def report_command(
    name: Annotated[str | None, typer.Argument(help="The report to print; none lists them.")] = None,
    output: Annotated[ReportFormat, typer.Option("--format", help="table, json or csv.")] = ReportFormat.TABLE,
) -> None:
    """List the reports (SQL views over projections in schema `reports`), or print one."""
    settings = load_settings()
    url = open_database(settings).url

    async def fetch() -> tuple[list[str], list[list[object]]]:
        async with EventStore.open(url) as store:
            if name is None:
                reports = await list_reports(store.pool)
                return ["report", "description"], [[item.name, item.description] for item in reports]
            report = await fetch_report(store.pool, name)
            return report.columns, [[row.get(column) for column in report.columns] for row in report.rows]

    columns, rows = run_async(fetch())
    if output is ReportFormat.JSON:
        write_line(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str))
    elif output is ReportFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        out.print(table)
