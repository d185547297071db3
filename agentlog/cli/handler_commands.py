"""`agentlog handler`: run handlers, list them, see their lag."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from agentlog.cli.common import handles_errors, load_settings, out, run_async, write_line
from agentlog.database import open_database
from agentlog.eventstore import EventStore
from agentlog.eventstore.errors import NotFoundError
from agentlog.eventstore.loading import log_plugin_errors
from agentlog.eventstore.postgres import recorder
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.registry import installed_handlers, resolve_handler
from agentlog.projections import installed_projections

app = typer.Typer(no_args_is_help=True, help="Handlers: reactions to the log, one active instance each.")


@app.command("run")
@handles_errors
def run_command(
    names: Annotated[list[str], typer.Argument(help="Installed handler names, or package.module:attribute.")],
) -> None:
    """Run handlers (or projections, by name) here; a second process running the same one stands by."""
    projections = installed_projections()
    installed = installed_handlers()
    handlers = [
        ProjectionHandler(projections.found[name]) if name in projections.found else resolve_handler(name, installed)
        for name in names
    ]
    log_plugin_errors([*projections.errors, *installed.errors])  # named, but not in the way of a healthy one
    settings = load_settings()
    from agentlog.system import run_system  # imported here: only running needs the whole system

    run_async(run_system(settings, open_database(settings).url, handlers, []))


@app.command("list")
@handles_errors
def list_command() -> None:
    """The installed handlers (entry point group agentlog.handlers)."""
    handlers = installed_handlers()
    if not handlers.found and not handlers.errors:
        out.print("no handlers installed")
    for name, handler in sorted(handlers.found.items()):
        types = "all events" if handler.event_types is None else ", ".join(sorted(handler.event_types))
        write_line(f"{name}\t{types}")
    for problem in handlers.errors:
        write_line(f"{problem.name}\tBROKEN: {problem.error} ({problem.value})")


@app.command("lag")
@handles_errors
def lag_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each handler's checkpoint, events behind the head and age of the oldest event it has not applied; and what
    holds the visibility barrier back, if anything (a long transaction anywhere holds every handler back)."""
    settings = load_settings()
    url = open_database(settings).url

    async def lag() -> tuple[list[recorder.HandlerLag], list[recorder.BarrierHolder]]:
        async with EventStore.open(url) as store:
            return await recorder.select_handler_lag(store.pool), await recorder.select_barrier_holders(store.pool)

    lags, holders = run_async(lag())
    barrier = holders[0] if holders else None
    if as_json:
        write_line(
            json.dumps(
                {
                    "handlers": [
                        {
                            "name": item.name,
                            "global_position": item.position.global_position,
                            "transaction_id": item.position.transaction_id,
                            "events_behind": item.events_behind,
                            "seconds_behind": item.seconds_behind,
                            "events_skipped": item.events_skipped,
                            "updated_at": item.updated_at.isoformat(),
                        }
                        for item in lags
                    ],
                    "barrier_held_by": None if barrier is None else dataclasses.asdict(barrier),
                }
            )
        )
        return
    table = Table("handler", "checkpoint", "events behind", "seconds behind", "skipped", "updated")
    for item in lags:
        table.add_row(
            Text(item.name),
            str(item.position),
            str(item.events_behind),
            f"{item.seconds_behind:.1f}",
            str(item.events_skipped),
            item.updated_at.isoformat(timespec="seconds"),
        )
    out.print(table)
    if barrier is not None and barrier.age_seconds >= 1:
        out.print(f"visibility barrier held by {barrier.describe()}", markup=False)


@app.command("skipped")
@handles_errors
def skipped_command(
    name: Annotated[str, typer.Argument(help="The handler or projection name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 1000,
) -> None:
    """The events a handler skipped because it could not decode them, and why (one malformed event from any
    writer must not stop a handler: it is passed, recorded here, and skipped alike by every replay)."""
    settings = load_settings()
    url = open_database(settings).url

    async def skipped() -> list[recorder.SkippedEvent]:
        async with EventStore.open(url) as store:
            if await recorder.select_checkpoint(store.pool, name) is None:
                raise NotFoundError(f"no handler or projection named {name!r} has run here (`agentlog handler lag`)")
            return await recorder.select_skipped(store.pool, name, limit)

    events = run_async(skipped())
    if as_json:
        write_line(
            json.dumps(
                [
                    {
                        "global_position": event.position.global_position,
                        "transaction_id": event.position.transaction_id,
                        "event_id": str(event.event_id),
                        "stream_id": event.stream_id,
                        "event_type": event.event_type,
                        "schema_version": event.schema_version,
                        "reason": event.reason,
                        "skipped_at": event.skipped_at.isoformat(),
                    }
                    for event in events
                ]
            )
        )
        return
    if not events:
        out.print(f"{name} skipped no events", markup=False)
        return
    table = Table("position", "stream", "type", "reason", "skipped")
    for event in events:
        table.add_row(
            str(event.position.global_position),
            Text(event.stream_id),
            Text(f"{event.event_type} v{event.schema_version}"),
            Text(event.reason),
            event.skipped_at.isoformat(timespec="seconds"),
        )
    out.print(table)
