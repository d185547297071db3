"""`agentlog task`: queue, list, show, cancel and requeue tasks, and the queue's depth — through the API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from agentlog.cli.common import ExitCode, fail, handles_errors, out
from agentlog.cli.remote import print_json, through_api

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient

app = typer.Typer(no_args_is_help=True, help="The task queue: create, list, show, cancel, requeue; queue depth.")


def parse_payload(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        fail(f"--payload: not JSON ({error})", ExitCode.USAGE)
    if not isinstance(payload, dict):
        fail('--payload: give a JSON object, like \'{"path": "src/a.py"}\'', ExitCode.USAGE)
    return payload


@app.command("create")
@handles_errors
def create_command(
    task_type: Annotated[str, typer.Argument(help="what kind of work (the agents' vocabulary)")],
    task_id: Annotated[str | None, typer.Option("--id", help="the task's id (made when not given)")] = None,
    payload: Annotated[str | None, typer.Option("--payload", help="a JSON object for the worker")] = None,
    priority: Annotated[int, typer.Option("--priority", help="1 lowest, 10 highest")] = 5,
    capability: Annotated[list[str] | None, typer.Option("--capability", help="needed by the agent; repeat")] = None,
    depends_on: Annotated[list[str] | None, typer.Option("--depends-on", help="done before; repeat")] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts")] = 3,
    run_at: Annotated[datetime | None, typer.Option("--run-at", help="not before (ISO 8601 with a time zone)",
                                                    formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"])] = None,
    dedupe_key: Annotated[str | None, typer.Option("--dedupe-key")] = None,
    concurrency_key: Annotated[str | None, typer.Option("--concurrency-key")] = None,
    concurrency_limit: Annotated[int, typer.Option("--concurrency-limit")] = 1,
) -> None:  # fmt: skip
    """Queue a task; prints its state (JSON)."""
    fields: dict[str, Any] = {
        "task_id": task_id, "payload": parse_payload(payload), "priority": priority, "capabilities": capability or [],
        "depends_on": depends_on or [], "max_attempts": max_attempts, "run_at": run_at, "dedupe_key": dedupe_key,
        "concurrency_key": concurrency_key, "concurrency_limit": concurrency_limit,
    }  # fmt: skip

    async def create(client: AgentlogClient) -> Any:
        return (await client.create_task(task_type, **fields)).model_dump(mode="json")

    print_json(through_api(create))


@app.command("list")
@handles_errors
def list_command(
    status: Annotated[str | None, typer.Option("--status")] = None,
    agent: Annotated[str | None, typer.Option("--agent")] = None,
    task_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
) -> None:
    """Tasks, by id, with their status, attempt and agent."""
    tasks = through_api(lambda client: client.tasks(status=status, agent_id=agent, task_type=task_type, limit=limit))
    table = Table("task", "type", "priority", "status", "attempt", "agent", "created", box=None)
    for task in tasks:
        created = "" if task.created_at is None else task.created_at.isoformat(timespec="seconds")
        table.add_row(task.task_id, task.task_type, str(task.priority), task.status, str(task.attempt),
                      task.agent_id or "", created)  # fmt: skip
    out.print(table)


@app.command("show")
@handles_errors
def show_command(task_id: str) -> None:
    """One task as the tasks projection shows it (JSON)."""

    async def show(client: AgentlogClient) -> Any:
        return (await client.task(task_id)).model_dump(mode="json")

    print_json(through_api(show))


@app.command("cancel")
@handles_errors
def cancel_command(task_id: str, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    """Cancel a task that has not finished (its agent is told)."""

    async def cancel(client: AgentlogClient) -> Any:
        return (await client.cancel_task(task_id, reason)).model_dump(mode="json")

    print_json(through_api(cancel))


@app.command("requeue")
@handles_errors
def requeue_command(task_id: str, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    """Queue a dead-lettered task again, with its attempts anew."""

    async def requeue(client: AgentlogClient) -> Any:
        return (await client.requeue_task(task_id, reason)).model_dump(mode="json")

    print_json(through_api(requeue))


@app.command("queue")
@handles_errors
def queue_command() -> None:
    """Queue depth: tasks by status and priority, with the oldest of each."""
    table = Table("status", "priority", "tasks", "oldest", box=None)
    for depth in through_api(lambda client: client.queue_depth()):
        oldest = "" if depth.oldest_created_at is None else depth.oldest_created_at.isoformat(timespec="seconds")
        table.add_row(depth.status, str(depth.priority), str(depth.tasks), oldest)
    out.print(table)
