"""`agentlog schedule`: cron schedules that create tasks or post to the chat — through the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from agentlog.cli.common import ExitCode, fail, handles_errors, out
from agentlog.cli.remote import print_json, through_api
from agentlog.cli.task_commands import parse_payload

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient
    from agentlog.client.models import ScheduleRow

app = typer.Typer(no_args_is_help=True, help="Cron schedules: create, list, show, change, pause, resume, delete.")


@app.command("create")
@handles_errors
def create_command(
    schedule_id: Annotated[str, typer.Argument(help="the schedule's id")],
    cron: Annotated[str, typer.Argument(help="5 fields (minute first), or 6 with seconds first; quote it")],
    task_type: Annotated[str | None, typer.Option("--task", help="each firing creates a task of this type")] = None,
    payload: Annotated[str | None, typer.Option("--payload", help="the task's JSON payload")] = None,
    priority: Annotated[int, typer.Option("--priority")] = 5,
    capability: Annotated[list[str] | None, typer.Option("--capability", help="repeat")] = None,
    chat: Annotated[str | None, typer.Option("--chat", help="... or posts this to the chat")] = None,
    time_zone: Annotated[str, typer.Option("--time-zone")] = "UTC",
    overlap: Annotated[str, typer.Option("--overlap", help="skip, buffer_one or allow_all")] = "skip",
    catch_up: Annotated[str, typer.Option("--catch-up", help="none, last or all (within --catch-up-window)")] = "none",
    catch_up_window_s: Annotated[float, typer.Option("--catch-up-window")] = 3600.0,
) -> None:  # fmt: skip
    """Create a schedule; prints its state (JSON)."""
    if (task_type is None) == (chat is None):
        fail("give one of --task TYPE or --chat MESSAGE: what each firing does", ExitCode.USAGE)
    action: dict[str, Any] = (
        {"kind": "chat", "body": chat} if chat is not None
        else {"kind": "task", "task": {"task_type": task_type, "payload": parse_payload(payload),
                                       "priority": priority, "capabilities": capability or []}}
    )  # fmt: skip
    fields = {"schedule_id": schedule_id, "time_zone": time_zone, "overlap": overlap, "catch_up": catch_up,
              "catch_up_window_s": catch_up_window_s}  # fmt: skip

    async def create(client: AgentlogClient) -> Any:
        return (await client.create_schedule(cron, action, **fields)).model_dump(mode="json")

    print_json(through_api(create))


@app.command("list")
@handles_errors
def list_command() -> None:
    """Live schedules: cron, status, slots fired, skipped and missed, the next slot."""
    table = Table("schedule", "cron", "time zone", "does", "status", "fired", "skipped", "missed", "next", box=None)
    for row in through_api(lambda client: client.schedules()):
        table.add_row(row.schedule_id, row.cron or "", row.time_zone or "", row.action_kind or "", row.status,
                      str(row.fired), str(row.skipped), str(row.missed),
                      "" if row.next_slot is None else row.next_slot.isoformat(timespec="seconds"))  # fmt: skip
    out.print(table)


@app.command("show")
@handles_errors
def show_command(schedule_id: str) -> None:
    async def show(client: AgentlogClient) -> ScheduleRow:
        return await client.schedule(schedule_id)

    print_json(through_api(show).model_dump(mode="json"))


@app.command("change")
@handles_errors
def change_command(
    schedule_id: str,
    cron: Annotated[str | None, typer.Option("--cron")] = None,
    time_zone: Annotated[str | None, typer.Option("--time-zone")] = None,
    overlap: Annotated[str | None, typer.Option("--overlap")] = None,
    catch_up: Annotated[str | None, typer.Option("--catch-up")] = None,
) -> None:
    """Change some fields of a schedule; the next slot follows them."""
    changes = {k: v for k, v in {"cron": cron, "time_zone": time_zone, "overlap": overlap,
                                 "catch_up": catch_up}.items() if v is not None}  # fmt: skip

    async def change(client: AgentlogClient) -> Any:
        return (await client.change_schedule(schedule_id, **changes)).model_dump(mode="json")

    print_json(through_api(change))


@app.command("pause")
@handles_errors
def pause_command(schedule_id: str, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    async def pause(client: AgentlogClient) -> Any:
        return (await client.pause_schedule(schedule_id, reason)).model_dump(mode="json")

    print_json(through_api(pause))


@app.command("resume")
@handles_errors
def resume_command(schedule_id: str) -> None:
    async def resume(client: AgentlogClient) -> Any:
        return (await client.resume_schedule(schedule_id)).model_dump(mode="json")

    print_json(through_api(resume))


@app.command("delete")
@handles_errors
def delete_command(schedule_id: str, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    async def delete(client: AgentlogClient) -> Any:
        return (await client.delete_schedule(schedule_id, reason)).model_dump(mode="json")

    print_json(through_api(delete))
