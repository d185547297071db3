"""`agentlog types`, `agentlog append`, `agentlog tail`: the log for people."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from agentlog.cli.common import ExitCode, fail, handles_errors, load_settings, out, run_async, write_line
from agentlog.database import open_database
from agentlog.eventstore import ANY, NO_STREAM, START, EventStore, NewEvent, RecordedEvent, catalogue
from agentlog.eventstore.records import StreamVersionExpectation

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document instead of a table.")]


def types_command(
    event_type: Annotated[str | None, typer.Argument(help="Show one type's schema versions in full.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The event catalogue: every type, its schema versions and their JSON schemas."""
    entries = [entry for entry in catalogue if event_type is None or entry.event_type == event_type]
    if event_type is not None and not entries:
        fail(f"unknown event type {event_type!r}; run `agentlog types` to list them", ExitCode.INVALID_INPUT)
    if as_json or event_type is not None:
        document = [
            {
                "event_type": entry.event_type,
                "schema_version": entry.schema_version,
                "category": entry.category,
                "description": entry.description,
                "json_schema": entry.json_schema(),
            }
            for entry in entries
        ]
        write_line(json.dumps(document, indent=2))
        return
    table = Table("event type", "schema version", "category", "fields", "description")
    for entry in entries:
        fields = ", ".join(entry.model.model_fields)
        table.add_row(entry.event_type, str(entry.schema_version), entry.category, fields, entry.description)
    out.print(table)


def _expected_version(text: str) -> StreamVersionExpectation:
    normalised = text.strip().lower().replace("-", "_")
    if normalised == "any":
        return ANY
    if normalised == "no_stream":
        return NO_STREAM
    if normalised.isdigit():
        return int(normalised)
    fail(f"--expected-version must be a number, 'any' or 'no-stream', not {text!r}", ExitCode.USAGE)


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        fail(f"{what} is not valid JSON: {error}", ExitCode.INVALID_INPUT)
    if not isinstance(value, dict):
        fail(f"{what} must be a JSON object, not {type(value).__name__}", ExitCode.INVALID_INPUT)
    return value


@handles_errors
def append_command(
    stream_id: Annotated[str, typer.Argument(help="Stream to append to, e.g. document-plan.")],
    event_type: Annotated[str, typer.Argument(help="Event type from `agentlog types`.")],
    data: Annotated[str, typer.Argument(help="The payload as a JSON object.")],
    expected_version: Annotated[
        str, typer.Option("--expected-version", help="A version number, 'any' or 'no-stream'.")
    ] = "any",
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="Event id (UUID); re-appending it appends nothing.")
    ] = None,
    metadata: Annotated[str, typer.Option("--metadata", help="Metadata as a JSON object.")] = "{}",
) -> None:
    """Append one event, validated against its schema. Bad input appends nothing."""
    expected = _expected_version(expected_version)
    payload = _json_object(data, "the payload")
    event_metadata = _json_object(metadata, "--metadata")
    try:
        parsed_id = uuid.UUID(event_id) if event_id is not None else None
    except ValueError:
        fail(f"--event-id is not a UUID: {event_id!r}", ExitCode.INVALID_INPUT)
    event = catalogue.parse(event_type, payload)
    new_event = (
        NewEvent(event, metadata=event_metadata)
        if parsed_id is None
        else NewEvent(event, event_id=parsed_id, metadata=event_metadata)
    )
    settings = load_settings()
    url = open_database(settings).url

    async def append() -> None:
        async with EventStore.open(url, notify_interval=0) as store:
            result = await store.append(stream_id, [new_event], expected)
        (appended,) = result.events
        verb = "already recorded" if appended.duplicate else "appended"
        write_line(
            f"{verb} {appended.event_id} to {appended.stream_id} at version {appended.stream_version}, "
            f"global position {appended.position.global_position}"
        )

    run_async(append())


def format_event(event: RecordedEvent) -> str:
    data = orjson.dumps(event.data).decode()
    metadata = orjson.dumps(event.metadata).decode()
    return (
        f"{event.global_position:>8}  {event.stream_id}  v{event.stream_version}  {event.event_type}  "
        f"{data}  {metadata}"
    )


@handles_errors
def tail_command(
    from_start: Annotated[bool, typer.Option("--from-start", help="Print the whole log first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Follow the live log: one line per event (global position, stream, version, type, data, metadata)."""
    settings = load_settings()
    url = open_database(settings).url

    async def tail() -> None:
        async with EventStore.open(url, poll_interval=settings.poll_interval_s) as store:
            after = START if from_start else await store.head()
            subscription = await store.subscribe(after=after)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, subscription.close)
            with contextlib.suppress(BrokenPipeError):
                async for batch in subscription:
                    for event in batch:
                        write_line(orjson.dumps(event.as_json()).decode() if as_json else format_event(event))

    run_async(tail())
